/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * CO-RE helpers for tasks, memory cgroups and kernfs paths. The same object
 * loads on 5.10 through 6.18: where a field was renamed or retyped, an
 * ___old flavour describes the older layout and bpf_core_field_exists
 * picks the one the running kernel has.
 */
#ifndef OOMTRACE_MEMCG_H
#define OOMTRACE_MEMCG_H

#include "vmlinux.h"
#include <bpf_core_read.h>
#include <bpf_helpers.h>

#include "events.h"

/* Before 6.15 kernfs_node.__parent was called parent. */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* Before 6.2 the mm counters were atomics, not per-CPU counters. */
struct mm_rss_stat___old {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

/* The mm counter indexes have not moved since 4.5. */
#define MM_FILE_IDX 0
#define MM_ANON_IDX 1
#define MM_SWAP_IDX 2
#define MM_SHMEM_IDX 3

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	struct kernfs_node___old *old = (void *)kn;

	if (bpf_core_field_exists(old->parent))
		return BPF_CORE_READ(old, parent);
	return BPF_CORE_READ(kn, __parent);
}

/* The task's memory cgroup, or NULL when the memory controller is absent. */
static __always_inline struct mem_cgroup *task_memcg(struct task_struct *task)
{
	struct cgroup_subsys_state *css;
	int id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	css = BPF_CORE_READ(task, cgroups, subsys[id]);
	/* css is the first member of struct mem_cgroup. */
	return (struct mem_cgroup *)css;
}

static __always_inline struct kernfs_node *memcg_kn(struct mem_cgroup *memcg)
{
	if (!memcg)
		return NULL;
	return BPF_CORE_READ(memcg, css.cgroup, kn);
}

/* The memcg's id: its kernfs node id, the directory's inode number. */
static __always_inline __u64 memcg_id(struct mem_cgroup *memcg)
{
	return BPF_CORE_READ(memcg_kn(memcg), id);
}

/* memory_events_local[MEMCG_OOM_KILL]: tasks the OOM killer killed here. */
static __always_inline __u64 memcg_oom_kills(struct mem_cgroup *memcg)
{
	return BPF_CORE_READ(memcg, memory_events_local[bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL)].counter);
}

static __always_inline struct mem_cgroup *memcg_parent(struct mem_cgroup *memcg)
{
	return (struct mem_cgroup *)BPF_CORE_READ(memcg, css.parent);
}

static __always_inline void read_memcg_level(struct memcg_level *lvl, struct mem_cgroup *memcg)
{
	lvl->cgroup_id = memcg_id(memcg);
	lvl->usage_pages = BPF_CORE_READ(memcg, memory.usage.counter);
	lvl->max_pages = BPF_CORE_READ(memcg, memory.max);
	lvl->failcnt = 0;
	if (bpf_core_field_exists(memcg->memory.failcnt))
		lvl->failcnt = BPF_CORE_READ(memcg, memory.failcnt);
	lvl->oom_events = BPF_CORE_READ(memcg, memory_events_local[bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM)].counter);
}

/* Page counters of memcg and its ancestors, leaf first; returns the count. */
static __always_inline __u32 read_memcg_levels(struct memcg_level *levels, struct mem_cgroup *memcg)
{
	__u32 n = 0;

#pragma unroll
	for (int i = 0; i < MEMCG_MAX_LEVELS; i++) {
		if (!memcg)
			break;
		read_memcg_level(&levels[i], memcg);
		n++;
		memcg = memcg_parent(memcg);
	}
	return n;
}

/*
 * Writes the path of kn relative to its hierarchy's root ("/a/b/c") into
 * out. Captured here, not in user space, because a container's cgroup can
 * be removed before user space looks it up.
 */
static __always_inline void read_cgroup_path(struct cgroup_path *out, struct kernfs_node *kn)
{
	struct kernfs_node *nodes[CGROUP_MAX_DEPTH] = {};
	struct kernfs_node *parent;
	__u32 depth = 0, off = 0;
	long n;

	out->len = 0;
	out->truncated = 0;
	out->depth = 0;
	out->id = 0;
	if (!kn)
		return;
	out->id = BPF_CORE_READ(kn, id);

	/* Leaf to root; the root itself has no name in the path. */
#pragma unroll
	for (int i = 0; i < CGROUP_MAX_DEPTH; i++) {
		if (!kn)
			break;
		parent = kernfs_parent(kn);
		if (!parent)
			break;
		nodes[i] = kn;
		depth++;
		kn = parent;
	}
	if (kn && kernfs_parent(kn))
		out->truncated = 1;
	out->depth = depth;

	if (depth == 0) {
		out->path[0] = '/';
		out->len = 1;
		return;
	}

	/* Root to leaf. Constant indexes keep nodes[] access verifiable; the
	 * mask only restates a bound already checked, for the verifier. */
#pragma unroll
	for (int j = CGROUP_MAX_DEPTH - 1; j >= 0; j--) {
		__u32 pos;

		if (j >= depth)
			continue;
		if (off >= CGROUP_PATH_SOFT_MAX - 1) {
			out->truncated = 1;
			break;
		}
		pos = off & (CGROUP_PATH_SOFT_MAX - 1);
		out->path[pos] = '/';
		n = bpf_probe_read_kernel_str(&out->path[pos + 1], CGROUP_PATH_SOFT_MAX,
					      BPF_CORE_READ(nodes[j], name));
		if (n <= 0)
			break;
		off = pos + n; /* n counts the NUL, which stands in for the '/' */
	}
	out->len = off;
}

static __always_inline __u32 task_ns_tgid(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid upid = {};

	bpf_core_read(&upid, sizeof(upid), &pid->numbers[level]);
	return upid.nr;
}

static __always_inline void read_task_info(struct task_info *info, struct task_struct *task)
{
	info->pid = BPF_CORE_READ(task, tgid);
	info->tid = BPF_CORE_READ(task, pid);
	info->ns_pid = task_ns_tgid(task);
	info->uid = BPF_CORE_READ(task, real_cred, uid.val);
	info->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	bpf_probe_read_kernel_str(info->comm, sizeof(info->comm), &task->comm);
}

static __always_inline __u64 clamp_positive(__s64 v)
{
	return v < 0 ? 0 : v;
}

/* Reads the mm counters the way the kernel's get_mm_counter() does. */
static __always_inline void read_mm_counters(struct oom_kill_event *e, struct mm_struct *mm)
{
	struct mm_struct___old *old = (void *)mm;

	e->rss_file_pages = e->rss_anon_pages = e->swap_entries = e->rss_shmem_pages = 0;
	e->total_vm_pages = e->pgtables_bytes = 0;
	if (!mm)
		return;
	if (bpf_core_field_exists(old->rss_stat)) {
		e->rss_file_pages = clamp_positive(BPF_CORE_READ(old, rss_stat.count[MM_FILE_IDX].counter));
		e->rss_anon_pages = clamp_positive(BPF_CORE_READ(old, rss_stat.count[MM_ANON_IDX].counter));
		e->swap_entries = clamp_positive(BPF_CORE_READ(old, rss_stat.count[MM_SWAP_IDX].counter));
		e->rss_shmem_pages = clamp_positive(BPF_CORE_READ(old, rss_stat.count[MM_SHMEM_IDX].counter));
	} else {
		e->rss_file_pages = clamp_positive(BPF_CORE_READ(mm, rss_stat[MM_FILE_IDX].count));
		e->rss_anon_pages = clamp_positive(BPF_CORE_READ(mm, rss_stat[MM_ANON_IDX].count));
		e->swap_entries = clamp_positive(BPF_CORE_READ(mm, rss_stat[MM_SWAP_IDX].count));
		e->rss_shmem_pages = clamp_positive(BPF_CORE_READ(mm, rss_stat[MM_SHMEM_IDX].count));
	}
	e->total_vm_pages = BPF_CORE_READ(mm, total_vm);
	e->pgtables_bytes = clamp_positive(BPF_CORE_READ(mm, pgtables_bytes.counter));
}

#endif
