// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * oomtrace's BPF programs: the OOM hooks, then page allocation failures.
 * User space loads only the programs of the tier it picked per hook.
 *
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
 * Page allocation failures: see the second part of this file.
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

/* Make the record types visible to bpf2go -type. */
const struct oom_kill_event *unused_oom_kill_event __attribute__((unused));
const struct memcg_oom_event *unused_memcg_oom_event __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const struct alloc_failure_event *unused_alloc_failure_event __attribute__((unused));
const enum alloc_source *unused_alloc_source __attribute__((unused));
const struct alloc_key *unused_alloc_key __attribute__((unused));
const struct alloc_tally *unused_alloc_tally __attribute__((unused));

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
	bool killed = true; /* no memcg to tell by: report what the kernel said */

	if (victim_memcg) {
		kills = memcg_oom_kills(victim_memcg);
		killed = oom_kill_counted(memcg_id(victim_memcg), kills);
	}
	call = bpf_map_lookup_elem(&memcg_oom_calls, &tid);
	if (call && killed)
		call->victims++;

	if (!event_wanted(victim, trigger, victim_memcg, trigger_memcg, NULL)) {
		/* The grouping state sees every mark, so the records that are
		 * written still get the OOM they belong to. */
		if (!bpf_map_lookup_elem(&oom_ctx, &tid))
			tracepoint_oom_id(tid, memcg_oom_events_along(victim_memcg), bpf_ktime_get_boot_ns());
		return 0;
	}
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
		e->oom.oom_id = tracepoint_oom_id(tid, levels_oom_events(e->levels, e->nr_levels),
						  e->hdr.boot_ns);
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
	c.memcg_id = memcg ? memcg_id(memcg) : 0;
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
	e = NULL;
	if (event_wanted(trigger, NULL, memcg, task_memcg(trigger), NULL))
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

/*
 * High-order page allocation failures.
 *
 * warn_alloc() (kprobe) sits on the allocator's failure path only, so the
 * allocation fast path pays nothing. It is variadic, so fentry cannot
 * attach; on kernels without kprobes the tracepoint kmem:mm_page_alloc
 * (tp_btf), which fires for every allocation, is filtered here to the
 * failures (page == NULL) before anything else is done.
 */

/* Set by user space before load. GFP bit values differ between kernels:
 * user space reads them from BTF where the kernel has them there. */
const volatile __u32 alloc_min_order = 1;
const volatile __u32 alloc_report_nowarn = 0;
const volatile __u32 gfp_nowarn = 0x2000;
/* Records per key and in all (alloctally.h); user space sets its flags'
 * values, these are the same defaults. */
const volatile struct alloc_limits alloc_record_limits = {
	.key = {.interval_ns = 1000000000ULL, .tolerance_ns = 9000000000ULL},
	.total = {.interval_ns = 50000000ULL, .tolerance_ns = 2450000000ULL},
};

/* Out of line: the program that runs on every allocation stays a few
 * instructions long, and only failures pay for the call. */
static __noinline void on_alloc_failure(void *ctx, __u32 order, __u32 gfp_mask, __u32 source)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mem_cgroup *memcg = task_memcg(task);
	/* Not copied: the stack is nearly full. Volatile, so the compiler
	 * reads what user space set, not the initializer. */
	const volatile struct alloc_limits *lim = &alloc_record_limits;
	struct alloc_failure_event *e;
	struct alloc_key key = {.order = order, .gfp_mask = gfp_mask};
	struct alloc_tally *t;
	__u64 now;

	if (order < alloc_min_order) {
		counter_inc(COUNTER_ALLOC_BELOW_ORDER);
		return;
	}
	if ((gfp_mask & gfp_nowarn) && !alloc_report_nowarn) {
		counter_inc(COUNTER_ALLOC_NOWARN);
		return;
	}
	if (!event_wanted(task, NULL, memcg, NULL, NULL))
		return;
	counter_inc(COUNTER_ALLOC_FAILURES);
	now = bpf_ktime_get_boot_ns();
	key.memcg_id = memcg ? memcg_id(memcg) : 0;
	t = alloc_tally_of(&key, now);
	if (t && !alloc_take_token(t, now, lim)) {
		alloc_count(t, false, now);
		return;
	}
	/* No tally (the map refused the key): a record of its own, as
	 * before floods were folded. */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* Folded rather than lost: the count stays exact. */
		if (t)
			alloc_count(t, false, now);
		else {
			counter_inc(COUNTER_RINGBUF_FULL);
			ringbuf_lost_inc(EVENT_ALLOC_FAILURE);
		}
		return;
	}
	e->hdr.boot_ns = now;
	e->hdr.kind = EVENT_ALLOC_FAILURE;
	e->hdr.cpu = bpf_get_smp_processor_id();
	read_task_info(&e->trigger, task);
	e->order = order;
	e->gfp_mask = gfp_mask;
	e->source = source;
	e->node = bpf_get_numa_node_id();
	read_cgroup_path(&e->trigger_cgroup, memcg_kn(memcg));
	read_stack(&e->stack, ctx);
	if (t)
		alloc_count(t, true, now);
	bpf_ringbuf_submit(e, 0);
}

/* warn_alloc(gfp, nodemask, fmt, ...): the page allocator calls it as
 * warn_alloc(gfp, nodemask, "page allocation failure: order:%u", order).
 * vmalloc calls it too, with other formats: those are not page failures. */
SEC("kprobe/warn_alloc")
int BPF_KPROBE(kprobe_warn_alloc, gfp_t gfp_mask, void *nodemask, const char *fmt)
{
	char prefix[8];

	if (bpf_probe_read_kernel(prefix, sizeof(prefix), fmt) ||
	    __builtin_memcmp(prefix, "page all", sizeof(prefix)))
		return 0;
	on_alloc_failure(ctx, (__u32)PT_REGS_PARM4(ctx), gfp_mask, ALLOC_SOURCE_WARN_ALLOC);
	return 0;
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(tp_mm_page_alloc, struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)
{
	if (page)
		return 0;
	on_alloc_failure(ctx, order, gfp_flags, ALLOC_SOURCE_MM_PAGE_ALLOC);
	return 0;
}
