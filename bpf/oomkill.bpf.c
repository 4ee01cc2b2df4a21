// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * OOM hooks.
 *
 * mark_victim (tracepoint) fires once for every task the OOM killer marks,
 * including each member of a memory.oom.group kill: it makes the oom_kill
 * records. In its tp_btf form current is the task that triggered the OOM.
 *
 * oom_kill_process (fentry, or kprobe) sees struct oom_control: which
 * memcg's limit fired, the OOM domain's size, gfp and order. It stores
 * that per thread; mark_victim, called inside it on the same thread,
 * joins it to its records.
 *
 * mem_cgroup_out_of_memory (fentry/fexit, or kprobe/kretprobe) makes one
 * memcg_oom record per memcg OOM, also when no victim is found.
 *
 * User space loads only the programs of the tier it picked per hook.
 */
#include "vmlinux.h"
#include <bpf_core_read.h>
#include <bpf_helpers.h>
#include <bpf_tracing.h>

#include "common.h"
#include "events.h"
#include "memcg.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* oom_kill_process() context of the thread running the OOM killer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct oom_context);
} oom_ctx SEC(".maps");

/* A mem_cgroup_out_of_memory() call in progress, per thread. */
struct memcg_oom_call {
	__u64 oom_id;
	__u64 memcg; /* struct mem_cgroup *, for the kretprobe tier */
	__u32 gfp_mask;
	__s32 order;
	__u32 victims;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct memcg_oom_call);
} memcg_oom_calls SEC(".maps");

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

/* Make the record types visible to bpf2go -type. */
const struct oom_kill_event *unused_oom_kill_event __attribute__((unused));
const struct memcg_oom_event *unused_memcg_oom_event __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));

#define GROUP_MARK_WINDOW_NS 100000000ULL /* 100 ms */

static __always_inline __u32 current_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline __u64 next_oom_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&oom_seq, &zero);

	if (!seq)
		return 0;
	*seq += 1;
	return *seq << OOM_ID_CPU_BITS | (bpf_get_smp_processor_id() & ((1 << OOM_ID_CPU_BITS) - 1));
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
		counter_inc(COUNTER_SEEN_MAP_FULL);
	return *count > prev;
}

/* mem_cgroup_get_oom_group(): is memory.oom.group set from the victim's
 * memcg up to the OOM domain? Only cgroup v2 has the knob; on v1 it stays 0. */
static __always_inline bool oom_group_set(struct task_struct *victim, struct mem_cgroup *domain)
{
	struct mem_cgroup *memcg = task_memcg(victim);

	if (!bpf_core_field_exists(memcg->oom_group))
		return false;
#pragma unroll
	for (int i = 0; i < MEMCG_MAX_LEVELS; i++) {
		if (!memcg)
			break;
		if (BPF_CORE_READ(memcg, oom_group))
			return true;
		if (memcg == domain)
			break;
		memcg = memcg_parent(memcg);
	}
	return false;
}

/* Groups tracepoint-only records into OOMs (see struct last_mark). */
static __always_inline __u64 tracepoint_oom_id(struct oom_kill_event *e, __u32 tid)
{
	__u32 zero = 0;
	struct last_mark *last = bpf_map_lookup_elem(&last_mark, &zero);
	__u64 ooms = 0;

	if (!last)
		return 0;
#pragma unroll
	for (int i = 0; i < MEMCG_MAX_LEVELS; i++)
		if (i < e->nr_levels)
			ooms += e->levels[i].oom_events;
	if (last->tid != tid || last->oom_events != ooms ||
	    e->hdr.boot_ns - last->boot_ns > GROUP_MARK_WINDOW_NS)
		last->oom_id = next_oom_id();
	last->tid = tid;
	last->oom_events = ooms;
	last->boot_ns = e->hdr.boot_ns;
	return last->oom_id;
}

static __always_inline int on_mark_victim(void *ctx, struct task_struct *victim)
{
	struct task_struct *trigger = (struct task_struct *)bpf_get_current_task();
	struct mem_cgroup *victim_memcg = task_memcg(victim);
	struct mem_cgroup *trigger_memcg = task_memcg(trigger);
	__u32 tid = current_tid();
	struct memcg_oom_call *call;
	struct oom_context *oc;
	struct oom_kill_event *e;
	__u64 kills = 0;
	bool killed;

	killed = oom_kill_counted(victim_memcg, &kills);
	call = bpf_map_lookup_elem(&memcg_oom_calls, &tid);
	if (call && killed)
		call->victims++;

	e = reserve_event(struct oom_kill_event, killed ? EVENT_OOM_KILL : EVENT_OOM_VICTIM_EXITING);
	if (!e)
		return 0;
	/* Reserved memory is not zeroed: every field Go reads is set below. */
	read_task_info(&e->victim, victim);
	read_task_info(&e->trigger, trigger);
	read_mm_counters(e, BPF_CORE_READ(victim, mm));
	e->memcg_oom_kills = kills;
	e->nr_levels = read_memcg_levels(e->levels, victim_memcg);
	read_cgroup_path(&e->victim_cgroup, memcg_kn(victim_memcg));
	read_cgroup_path(&e->trigger_cgroup, memcg_kn(trigger_memcg));
	read_stack(&e->stack, ctx);

	oc = bpf_map_lookup_elem(&oom_ctx, &tid);
	if (oc) {
		e->oom = *oc;
	} else {
		__builtin_memset(&e->oom, 0, sizeof(e->oom));
		e->oom.oom_id = tracepoint_oom_id(e, tid);
		e->oom.group_kill = oom_group_set(victim, NULL);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Linux 6.9 and the stable kernels that took the change (6.1.130,
 * 5.10.235, ...): the tracepoint passes the victim task. */
SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim, struct task_struct *victim, uid_t uid)
{
	return on_mark_victim(ctx, victim);
}

/* Older kernels pass only the pid: the victim is the task oom_kill_process
 * chose, or the one __oom_kill_process is killing (group members). A pid
 * that matches neither is not reported: there is no task to read. */
struct oom_task_ref {
	__u64 task;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct oom_task_ref);
} oom_chosen SEC(".maps");

SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim_pid, int pid)
{
	__u32 tid = current_tid();
	struct oom_task_ref *ref = bpf_map_lookup_elem(&oom_chosen, &tid);
	struct task_struct *victim;

	if (!ref)
		return 0;
	victim = (struct task_struct *)ref->task;
	if (BPF_CORE_READ(victim, tgid) != pid && BPF_CORE_READ(victim, pid) != pid)
		return 0;
	return on_mark_victim(ctx, victim);
}

/* __oom_kill_process(victim, message) kills one task, the chosen one or a
 * group member, and marks it: on pid-only kernels this is how
 * mark_victim_pid finds every victim's task. */
static __always_inline void on_kill_one(struct task_struct *victim)
{
	__u32 tid = current_tid();
	struct oom_task_ref ref = {.task = (__u64)victim};

	bpf_map_update_elem(&oom_chosen, &tid, &ref, BPF_ANY);
}

SEC("fentry/__oom_kill_process")
int BPF_PROG(fentry_oom_kill_one, struct task_struct *victim)
{
	on_kill_one(victim);
	return 0;
}

SEC("kprobe/__oom_kill_process")
int BPF_KPROBE(kprobe_oom_kill_one, struct task_struct *victim)
{
	on_kill_one(victim);
	return 0;
}

static __always_inline void on_oom_kill_process(struct oom_control *oc)
{
	__u32 tid = current_tid();
	struct memcg_oom_call *call = bpf_map_lookup_elem(&memcg_oom_calls, &tid);
	struct mem_cgroup *memcg = BPF_CORE_READ(oc, memcg);
	struct task_struct *chosen = BPF_CORE_READ(oc, chosen);
	struct oom_task_ref ref = {.task = (__u64)chosen};
	struct oom_context c = {};

	c.oom_id = call ? call->oom_id : next_oom_id();
	c.totalpages = BPF_CORE_READ(oc, totalpages);
	c.chosen_points = BPF_CORE_READ(oc, chosen_points);
	c.memcg_id = memcg ? BPF_CORE_READ(memcg_kn(memcg), id) : 0;
	c.gfp_mask = BPF_CORE_READ(oc, gfp_mask);
	c.order = BPF_CORE_READ(oc, order);
	c.constraint = BPF_CORE_READ(oc, constraint);
	c.valid = 1;
	c.group_kill = oom_group_set(chosen, memcg);
	if (bpf_map_update_elem(&oom_ctx, &tid, &c, BPF_ANY))
		counter_inc(COUNTER_CTX_MAP_FULL);
	bpf_map_update_elem(&oom_chosen, &tid, &ref, BPF_ANY);
}

static __always_inline void on_oom_kill_process_return(void)
{
	__u32 tid = current_tid();

	bpf_map_delete_elem(&oom_ctx, &tid);
	bpf_map_delete_elem(&oom_chosen, &tid);
}

SEC("fentry/oom_kill_process")
int BPF_PROG(fentry_oom_kill_process, struct oom_control *oc)
{
	on_oom_kill_process(oc);
	return 0;
}

SEC("fexit/oom_kill_process")
int BPF_PROG(fexit_oom_kill_process)
{
	on_oom_kill_process_return();
	return 0;
}

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(kprobe_oom_kill_process, struct oom_control *oc)
{
	on_oom_kill_process(oc);
	return 0;
}

SEC("kretprobe/oom_kill_process")
int BPF_KRETPROBE(kretprobe_oom_kill_process)
{
	on_oom_kill_process_return();
	return 0;
}

static __always_inline void on_memcg_oom(struct mem_cgroup *memcg, __u32 gfp_mask, int order)
{
	__u32 tid = current_tid();
	struct memcg_oom_call call = {
		.oom_id = next_oom_id(),
		.memcg = (__u64)memcg,
		.gfp_mask = gfp_mask,
		.order = order,
	};

	if (bpf_map_update_elem(&memcg_oom_calls, &tid, &call, BPF_ANY))
		counter_inc(COUNTER_CTX_MAP_FULL);
}

static __always_inline void on_memcg_oom_return(void *ctx, bool found)
{
	struct task_struct *trigger = (struct task_struct *)bpf_get_current_task();
	__u32 tid = current_tid();
	struct memcg_oom_call *call = bpf_map_lookup_elem(&memcg_oom_calls, &tid);
	struct mem_cgroup *memcg;
	struct memcg_oom_event *e;

	if (!call)
		return;
	memcg = (struct mem_cgroup *)call->memcg;
	e = reserve_event(struct memcg_oom_event, EVENT_MEMCG_OOM);
	if (e) {
		read_task_info(&e->trigger, trigger);
		e->oom_id = call->oom_id;
		e->gfp_mask = call->gfp_mask;
		e->order = call->order;
		e->victims = call->victims;
		e->victim_found = found;
		e->nr_levels = read_memcg_levels(e->levels, memcg);
		read_cgroup_path(&e->memcg_cgroup, memcg_kn(memcg));
		read_cgroup_path(&e->trigger_cgroup, memcg_kn(task_memcg(trigger)));
		read_stack(&e->stack, ctx);
		bpf_ringbuf_submit(e, 0);
	}
	bpf_map_delete_elem(&memcg_oom_calls, &tid);
}

SEC("fentry/mem_cgroup_out_of_memory")
int BPF_PROG(fentry_memcg_oom, struct mem_cgroup *memcg, gfp_t gfp_mask, int order)
{
	on_memcg_oom(memcg, gfp_mask, order);
	return 0;
}

SEC("fexit/mem_cgroup_out_of_memory")
int BPF_PROG(fexit_memcg_oom, struct mem_cgroup *memcg, gfp_t gfp_mask, int order, bool ret)
{
	on_memcg_oom_return(ctx, ret);
	return 0;
}

SEC("kprobe/mem_cgroup_out_of_memory")
int BPF_KPROBE(kprobe_memcg_oom, struct mem_cgroup *memcg, gfp_t gfp_mask, int order)
{
	on_memcg_oom(memcg, gfp_mask, order);
	return 0;
}

SEC("kretprobe/mem_cgroup_out_of_memory")
int BPF_KRETPROBE(kretprobe_memcg_oom, bool ret)
{
	on_memcg_oom_return(ctx, ret);
	return 0;
}
