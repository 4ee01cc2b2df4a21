// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * High-order page allocation failures.
 *
 * warn_alloc() (kprobe) sits on the allocator's failure path only, so the
 * allocation fast path pays nothing. It is variadic, so fentry cannot
 * attach; on kernels without kprobes the tracepoint kmem:mm_page_alloc
 * (tp_btf), which fires for every allocation, is filtered here to the
 * failures (page == NULL) before anything else is done.
 */
#include "vmlinux.h"
#include <bpf_core_read.h>
#include <bpf_helpers.h>
#include <bpf_tracing.h>

#include "common.h"
#include "events.h"
#include "memcg.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. GFP bit values differ between kernels:
 * user space reads them from BTF where the kernel has them there. */
const volatile __u32 alloc_min_order = 1;
const volatile __u32 alloc_report_nowarn = 0;
const volatile __u32 gfp_nowarn = 0x2000;

const struct alloc_failure_event *unused_alloc_failure_event __attribute__((unused));
const enum alloc_source *unused_alloc_source __attribute__((unused));

/* Out of line: the program that runs on every allocation stays a few
 * instructions long, and only failures pay for the call. */
static __noinline void on_alloc_failure(void *ctx, __u32 order, __u32 gfp_mask, __u32 source)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct alloc_failure_event *e;

	if (order < alloc_min_order) {
		counter_inc(COUNTER_ALLOC_BELOW_ORDER);
		return;
	}
	if ((gfp_mask & gfp_nowarn) && !alloc_report_nowarn) {
		counter_inc(COUNTER_ALLOC_NOWARN);
		return;
	}
	e = reserve_event(struct alloc_failure_event, EVENT_ALLOC_FAILURE);
	if (!e)
		return;
	read_task_info(&e->trigger, task);
	e->order = order;
	e->gfp_mask = gfp_mask;
	e->source = source;
	e->node = bpf_get_numa_node_id();
	read_cgroup_path(&e->trigger_cgroup, memcg_kn(task_memcg(task)));
	read_stack(&e->stack, ctx);
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
