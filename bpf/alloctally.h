/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Floods of page allocation failures (thousands a second: a loop of
 * nr_hugepages writes, a driver retrying) are tallied in the kernel per
 * (memory cgroup, order, gfp): a failure gets its own record only while
 * its key's token bucket and the global one both have a token; the rest
 * are counted in the key's tally. User space reads the tallies every
 * interval and reports what was folded since it last looked, so no count
 * stays hidden and every count is exact:
 *
 *     records written + folded == failures tallied (COUNTER_ALLOC_FAILURES)
 *
 * The counts only grow (atomic adds, which every kernel since 5.10
 * takes), and only user space takes differences of them: nothing here
 * needs an atomic exchange, and two CPUs failing at once cannot lose or
 * double a count. The buckets are read and written without atomics: two
 * CPUs taking the same key's last token at once let one record more
 * through, which bounds the rate a little less tightly, never the counts.
 */
#ifndef OOMTRACE_ALLOCTALLY_H
#define OOMTRACE_ALLOCTALLY_H

#include "vmlinux.h"
#include <bpf_helpers.h>

#include "common.h"
#include "events.h"

/* Keys tallied at once. A key pushed out before user space read its
 * folded count loses that count: it takes more distinct keys than this
 * failing within one read interval. */
#define ALLOC_TALLY_KEYS 8192

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ALLOC_TALLY_KEYS);
	__type(key, struct alloc_key);
	__type(value, struct alloc_tally);
} alloc_tallies SEC(".maps");

/* The global bucket: its next conforming time, shared by every key. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} alloc_total_bucket SEC(".maps");

/* Where a new key's first tally is built: off the stack, which the
 * programs that call on_alloc_failure have little of left. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct alloc_tally);
} alloc_tally_scratch SEC(".maps");

/*
 * A token bucket as a virtual schedule (GCRA): tat is when the bucket is
 * next full again. A failure at now conforms when tat is at most
 * tolerance ahead of now, tolerance = (burst - 1) × interval, interval =
 * 1 s / rate; taking the token moves tat one interval on. interval 0:
 * no limit.
 */
static __always_inline bool bucket_conforms(__u64 tat, __u64 now, const volatile struct alloc_bucket *b)
{
	return !b->interval_ns || tat <= now || tat - now <= b->tolerance_ns;
}

static __always_inline __u64 bucket_take(__u64 tat, __u64 now, const volatile struct alloc_bucket *b)
{
	return (tat > now ? tat : now) + b->interval_ns;
}

/* The key's tally, made on its first failure; NULL only when the map
 * cannot take it. */
static __always_inline struct alloc_tally *alloc_tally_of(const struct alloc_key *key, __u64 now)
{
	struct alloc_tally *t = bpf_map_lookup_elem(&alloc_tallies, key);
	__u32 zero = 0;

	if (t)
		return t;
	t = bpf_map_lookup_elem(&alloc_tally_scratch, &zero);
	if (!t)
		return NULL;
	__builtin_memset(t, 0, sizeof(*t));
	t->first_ns = now;
	bpf_map_update_elem(&alloc_tallies, key, t, BPF_NOEXIST);
	return bpf_map_lookup_elem(&alloc_tallies, key);
}

/* Whether a failure of t's key at now may have a record of its own;
 * takes a token from both buckets when it may. */
static __always_inline bool alloc_take_token(struct alloc_tally *t, __u64 now,
					     const volatile struct alloc_limits *lim)
{
	__u32 zero = 0;
	__u64 *total = bpf_map_lookup_elem(&alloc_total_bucket, &zero);

	if (!total)
		return true;
	if (!bucket_conforms(t->tat, now, &lim->key) || !bucket_conforms(*total, now, &lim->total))
		return false;
	t->tat = bucket_take(t->tat, now, &lim->key);
	*total = bucket_take(*total, now, &lim->total);
	return true;
}

/* Counts a failure of t's key: written as its own record, or folded. */
static __always_inline void alloc_count(struct alloc_tally *t, bool written, __u64 now)
{
	if (written) {
		__sync_fetch_and_add(&t->records, 1);
	} else {
		__sync_fetch_and_add(&t->folded, 1);
		counter_inc(COUNTER_ALLOC_FOLDED);
	}
	t->last_ns = now;
}

#endif
