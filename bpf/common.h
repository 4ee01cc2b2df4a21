/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ring buffer every record goes through, in order, the loss and
 * filter counters, and helpers every program uses.
 */
#ifndef OOMTRACE_COMMON_H
#define OOMTRACE_COMMON_H

#include "vmlinux.h"
#include <bpf_helpers.h>

#include "events.h"

/* Sized by user space before load (--ringbuf-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Per enum counter, per CPU: user space sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Records lost because the ring buffer was full, per CPU, by enum
 * event_kind: a lost OOM kill is told apart from a lost summary. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EVENT_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ringbuf_lost SEC(".maps");

static __always_inline void ringbuf_lost_inc(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&ringbuf_lost, &kind);

	if (n)
		*n += 1;
}

static __always_inline __u32 current_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline void counter_inc(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);

	if (n)
		*n += 1;
}

/* Reserves a record of the given kind, or counts the loss. */
#define reserve_event(type, kind_)                                            \
	({                                                                    \
		type *__e = bpf_ringbuf_reserve(&events, sizeof(type), 0);    \
		if (__e) {                                                    \
			__e->hdr.boot_ns = bpf_ktime_get_boot_ns();           \
			__e->hdr.kind = (kind_);                              \
			__e->hdr.cpu = bpf_get_smp_processor_id();            \
		} else {                                                      \
			counter_inc(COUNTER_RINGBUF_FULL);                    \
			ringbuf_lost_inc(kind_);                              \
		}                                                             \
		__e;                                                          \
	})

/* The current kernel stack; ctx is the program's context. */
static __always_inline void read_stack(struct kernel_stack *st, void *ctx)
{
	long n = bpf_get_stack(ctx, st->ips, sizeof(st->ips), 0);

	st->depth = n > 0 ? n / sizeof(st->ips[0]) : 0;
}

#endif
