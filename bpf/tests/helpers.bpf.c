// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * Test programs for the helpers in bpf/ (memcg.h, oom.h, filter.h, alloctally.h): each runs the
 * real helper under BPF_PROG_TEST_RUN and leaves what it saw where the
 * tests in internal/bpf/bpftest read it. They are raw_tp programs, because those run
 * in the calling thread: current is the Go test's own thread, which the test
 * has placed in the cgroup it wants read. Inputs come as the raw_tp
 * arguments (RunOptions.Context).
 */
#include "vmlinux.h"
#include <bpf_core_read.h>
#include <bpf_helpers.h>
#include <bpf_tracing.h>

#include "alloctally.h"
#include "common.h"
#include "events.h"
#include "filter.h"
#include "memcg.h"
#include "oom.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What the helpers read about the current task's memory cgroup. */
struct current_memcg {
	struct cgroup_path path;
	__u32 nr_levels;
	__u32 _pad;
	struct memcg_level levels[MEMCG_MAX_LEVELS]; /* leaf first */
};

/* Outputs, in .bss: the tests read them as the object's variables. */
struct current_memcg current_memcg_seen;
__u64 oom_id_seen;

/* read_cgroup_path and read_memcg_levels on the calling thread's memcg. */
SEC("raw_tp")
int read_current_memcg(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mem_cgroup *memcg = task_memcg(task);

	read_cgroup_path(&current_memcg_seen.path, memcg_kn(memcg));
	current_memcg_seen.nr_levels = read_memcg_levels(current_memcg_seen.levels, memcg);
	return 0;
}

/* tracepoint_oom_id for a mark by thread tid at boot_ns, with ooms memcg
 * OOMs along the victim's cgroups; the id goes to oom_id_seen. */
SEC("raw_tp")
int BPF_PROG(group_mark, __u64 tid, __u64 ooms, __u64 boot_ns)
{
	oom_id_seen = tracepoint_oom_id(tid, ooms, boot_ns);
	return 0;
}

/* oom_kill_counted for a victim in memcg memcg_id whose OOM kill counter
 * reads kills; returns 1 when it counts as killed. */
SEC("raw_tp")
int BPF_PROG(count_kill, __u64 memcg_id, __u64 kills)
{
	return oom_kill_counted(memcg_id, kills);
}

/* filter_match with the filter (want_pid, want_cgroup) for a record of
 * the task with tgid pid in the calling thread's memcg; 1 when it passes. */
SEC("raw_tp")
int BPF_PROG(match_filter, __u64 want_pid, __u64 want_cgroup, __u64 pid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct record_filter f = {.cgroup_id = want_cgroup, .pid = want_pid};

	return filter_match(&f, pid, 0, task_memcg(task), NULL, NULL);
}

/* One allocation failure of key (memcg_id, order, gfp_mask) at now, as
 * on_alloc_failure tallies it, with the limits given as intervals and
 * tolerances (ns); returns 1 when it would be written as its own record. */
SEC("raw_tp")
int BPF_PROG(tally_failure, __u64 memcg_id, __u64 order, __u64 gfp_mask, __u64 now, __u64 key_interval,
	     __u64 key_tolerance, __u64 total_interval, __u64 total_tolerance)
{
	struct alloc_key key = {.memcg_id = memcg_id, .order = order, .gfp_mask = gfp_mask};
	struct alloc_limits lim = {
		.key = {.interval_ns = key_interval, .tolerance_ns = key_tolerance},
		.total = {.interval_ns = total_interval, .tolerance_ns = total_tolerance},
	};
	struct alloc_tally *t = alloc_tally_of(&key, now);
	bool written;

	if (!t)
		return 2;
	written = alloc_take_token(t, now, &lim);
	alloc_count(t, written, now);
	return written;
}
