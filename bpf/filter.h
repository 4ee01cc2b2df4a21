/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel-side filter of a trace session that loads its own probes: a pid
 * and a memory cgroup subtree. Records that cannot match are not written
 * to the ring buffer; they are counted (COUNTER_FILTERED). User space
 * still applies the exact filter, so this one only has to be a superset:
 * where it cannot tell (a memcg deeper than it walks), it passes.
 */
#ifndef OOMTRACE_FILTER_H
#define OOMTRACE_FILTER_H

#include "vmlinux.h"
#include <bpf_helpers.h>

#include "common.h"
#include "events.h"
#include "memcg.h"

/* The filter, as the pure helper below takes it. Zero fields match all. */
struct record_filter {
	__u64 cgroup_id; /* kernfs id (directory inode) of the subtree's top */
	__u32 pid;       /* host tgid of the victim or the trigger */
	__u32 _pad;
};

/* True when memcg is root_id's memcg or below it. A memcg deeper than
 * CGROUP_MAX_DEPTH below root_id counts as inside: user space decides. */
static __always_inline bool memcg_in_subtree(struct mem_cgroup *memcg, __u64 root_id)
{
#pragma unroll
	for (int i = 0; i < CGROUP_MAX_DEPTH; i++) {
		if (!memcg)
			return false;
		if (memcg_id(memcg) == root_id)
			return true;
		memcg = memcg_parent(memcg);
	}
	return memcg != NULL;
}

/*
 * Whether a record with these tasks' tgids and these memcgs (any may be
 * 0 or NULL) can pass f: the pid is one of the tgids and one of the
 * memcgs is in the subtree. Every field set must match, as in user space.
 */
static __always_inline bool filter_match(const struct record_filter *f, __u32 pid_a, __u32 pid_b,
					 struct mem_cgroup *m1, struct mem_cgroup *m2,
					 struct mem_cgroup *m3)
{
	if (f->pid && pid_a != f->pid && pid_b != f->pid)
		return false;
	if (f->cgroup_id && !memcg_in_subtree(m1, f->cgroup_id) &&
	    !memcg_in_subtree(m2, f->cgroup_id) && !memcg_in_subtree(m3, f->cgroup_id))
		return false;
	return true;
}

/* Set by user space before load; zero (the agent's default) filters
 * nothing and costs one branch per record. */
const volatile __u32 filter_pid = 0;
const volatile __u64 filter_cgroup_id = 0;

/* filter_match against the load-time filter; counts what it drops. */
static __always_inline bool event_wanted(struct task_struct *a, struct task_struct *b,
					 struct mem_cgroup *m1, struct mem_cgroup *m2,
					 struct mem_cgroup *m3)
{
	struct record_filter f = {.cgroup_id = filter_cgroup_id, .pid = filter_pid};

	if (!f.pid && !f.cgroup_id)
		return true;
	if (filter_match(&f, a ? BPF_CORE_READ(a, tgid) : 0, b ? BPF_CORE_READ(b, tgid) : 0, m1, m2, m3))
		return true;
	counter_inc(COUNTER_FILTERED);
	return false;
}

#endif
