/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which OOM a record belongs to, and whether its victim was killed. These
 * helpers take their inputs as arguments and keep their state in maps, so
 * bpf/tests can run them with BPF_PROG_TEST_RUN and check that state.
 */
#ifndef OOMTRACE_OOM_H
#define OOMTRACE_OOM_H

#include "vmlinux.h"
#include <bpf_helpers.h>

#include "common.h"
#include "events.h"
#include "memcg.h"

/*
 * Last seen memory_events_local[MEMCG_OOM_KILL] per memcg (kernfs id).
 * The kill path raises that counter just before it marks the victim; a
 * victim marked without a raise was already exiting and got no SIGKILL.
 * User space seeds the cgroups that had kills before it started; a memcg
 * without an entry has had none.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} oom_kills_seen SEC(".maps");

/*
 * Where no function hook runs, mark_victim groups its records into OOMs
 * itself: same trigger thread, same count of memcg OOMs along the victim's
 * cgroups, and close in time.
 */
struct last_mark {
	__u64 oom_id;
	__u64 boot_ns;
	__u64 oom_events;
	__u32 tid;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_mark);
} last_mark SEC(".maps");

/*
 * Source of oom_id: one per OOM. A per-CPU count with the CPU in the low
 * bits is unique without atomic fetch-and-add, which 5.10 lacks; memcg
 * OOMs in different cgroups start concurrently on different CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} oom_seq SEC(".maps");

#define OOM_ID_CPU_BITS 12

#define GROUP_MARK_WINDOW_NS 100000000ULL /* 100 ms */

static __always_inline __u64 next_oom_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&oom_seq, &zero);

	if (!seq)
		return 0;
	*seq += 1;
	return *seq << OOM_ID_CPU_BITS | (bpf_get_smp_processor_id() & ((1 << OOM_ID_CPU_BITS) - 1));
}

/*
 * True when kills, the OOM kill counter of the victim's memcg (kernfs id
 * memcg_id), rose since the last mark in that memcg. Remembers kills.
 */
static __always_inline bool oom_kill_counted(__u64 memcg_id, __u64 kills)
{
	__u64 *seen, prev = 0;

	seen = bpf_map_lookup_elem(&oom_kills_seen, &memcg_id);
	if (seen)
		prev = *seen;
	if (kills != prev && bpf_map_update_elem(&oom_kills_seen, &memcg_id, &kills, BPF_ANY))
		counter_inc(COUNTER_SEEN_MAP_FULL);
	return kills > prev;
}

/* The memcg OOMs counted along a victim's cgroups (leaf first). */
static __always_inline __u64 levels_oom_events(const struct memcg_level *levels, __u32 nr_levels)
{
	__u64 ooms = 0;

#pragma unroll
	for (int i = 0; i < MEMCG_MAX_LEVELS; i++)
		if (i < nr_levels)
			ooms += levels[i].oom_events;
	return ooms;
}

/* levels_oom_events read straight from the memcgs, for a record that is
 * filtered out and so has no levels of its own. */
static __always_inline __u64 memcg_oom_events_along(struct mem_cgroup *memcg)
{
	__u64 ooms = 0;

#pragma unroll
	for (int i = 0; i < MEMCG_MAX_LEVELS; i++) {
		if (!memcg)
			break;
		ooms += BPF_CORE_READ(memcg, memory_events_local[bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM)].counter);
		memcg = memcg_parent(memcg);
	}
	return ooms;
}

/*
 * Groups tracepoint-only records into OOMs (see struct last_mark): the
 * mark by thread tid at boot_ns, with ooms memcg OOMs counted along the
 * victim's cgroups, gets the previous mark's id or a new one.
 */
static __always_inline __u64 tracepoint_oom_id(__u32 tid, __u64 ooms, __u64 boot_ns)
{
	__u32 zero = 0;
	struct last_mark *last = bpf_map_lookup_elem(&last_mark, &zero);

	if (!last)
		return 0;
	if (last->tid != tid || last->oom_events != ooms ||
	    boot_ns - last->boot_ns > GROUP_MARK_WINDOW_NS)
		last->oom_id = next_oom_id();
	last->tid = tid;
	last->oom_events = ooms;
	last->boot_ns = boot_ns;
	return last->oom_id;
}

#endif
