// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * OOM kill hooks. mark_victim fires once for every task the OOM killer
 * marks, including each member of a memory.oom.group kill; in its tp_btf
 * form the argument is the victim and current is the task whose
 * allocation triggered the OOM.
 */
#include "vmlinux.h"
#include <bpf_core_read.h>
#include <bpf_helpers.h>
#include <bpf_tracing.h>

#include "events.h"
#include "memcg.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sized by user space before load (--ringbuf-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Records that could not be delivered, per enum drop_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

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

/* Make the record types visible to bpf2go -type. */
const struct oom_kill_event *unused_oom_kill_event __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum drop_reason *unused_drop_reason __attribute__((unused));

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);

	if (n)
		*n += 1;
}

/* True when the victim memcg's OOM kill counter rose since the last mark. */
static __always_inline bool oom_kill_counted(struct mem_cgroup *memcg, __u64 *count)
{
	int ev = bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL);
	__u64 id, *seen, prev = 0;

	if (!memcg)
		return true; /* no memcg to tell by: report what the kernel said */
	id = BPF_CORE_READ(memcg_kn(memcg), id);
	*count = BPF_CORE_READ(memcg, memory_events_local[ev].counter);
	seen = bpf_map_lookup_elem(&oom_kills_seen, &id);
	if (seen)
		prev = *seen;
	if (*count != prev && bpf_map_update_elem(&oom_kills_seen, &id, count, BPF_ANY))
		count_drop(DROP_SEEN_MAP_FULL);
	return *count > prev;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim, struct task_struct *victim, uid_t uid)
{
	struct task_struct *trigger = bpf_get_current_task_btf();
	struct mem_cgroup *victim_memcg = task_memcg(victim);
	struct mem_cgroup *trigger_memcg = task_memcg(trigger);
	struct oom_kill_event *e;
	__u64 kills = 0;
	bool killed;

	killed = oom_kill_counted(victim_memcg, &kills);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	/* Reserved memory is not zeroed: every field Go reads is set below. */
	e->hdr.boot_ns = bpf_ktime_get_boot_ns();
	e->hdr.kind = killed ? EVENT_OOM_KILL : EVENT_OOM_VICTIM_EXITING;
	e->hdr.cpu = bpf_get_smp_processor_id();

	read_task_info(&e->victim, victim);
	e->victim.uid = uid;
	read_task_info(&e->trigger, trigger);
	read_mm_counters(e, BPF_CORE_READ(victim, mm));
	e->memcg_oom_kills = kills;

	e->nr_levels = read_memcg_levels(e->levels, victim_memcg);
	read_cgroup_path(&e->victim_cgroup, memcg_kn(victim_memcg));
	read_cgroup_path(&e->trigger_cgroup, memcg_kn(trigger_memcg));

	bpf_ringbuf_submit(e, 0);
	return 0;
}
