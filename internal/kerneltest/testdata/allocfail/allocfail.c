// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test module: makes warned high-order page allocation failures with a
 * known stack. Its init asks for blocks of 2^order pages (default order
 * 10, 4 MiB) that the VM's small memory cannot always give, holds what it
 * got for hold_ms (so free memory can be looked at meanwhile), frees it,
 * and fails with -EAGAIN so it never stays loaded.
 *
 * flood=1 makes a flood instead: tries allocations of order from ZONE_DMA
 * (16 MiB on x86: a few blocks of order 9 or 10 at most) without reclaim,
 * so after the first few, which it keeps, every one fails at once, as
 * fast as the allocator can say no; with flood_ms it keeps going for that
 * long instead of tries times. It logs how many failed, and in how many
 * microseconds.
 */
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>

#define MAX_TRIES 1024

static int order = 10;
module_param(order, int, 0444);
static int tries = 200;
module_param(tries, int, 0444);
static int hold_ms;
module_param(hold_ms, int, 0444);
static int flood;
module_param(flood, int, 0444);
static int flood_ms;
module_param(flood_ms, int, 0444);

static struct page *pages[MAX_TRIES];

static int allocfail_flood(void)
{
	LIST_HEAD(held);
	struct page *page, *next;
	int i, failed = 0;
	ktime_t start = ktime_get();
	ktime_t end = ktime_add_ms(start, flood_ms);
	s64 us;

	for (i = 0; flood_ms > 0 ? ktime_before(ktime_get(), end) : i < tries; i++) {
		page = alloc_pages(GFP_DMA | __GFP_NORETRY, order);
		if (page)
			list_add(&page->lru, &held);
		else
			failed++;
		if (i % 1024 == 0)
			cond_resched();
	}
	us = ktime_us_delta(ktime_get(), start);
	list_for_each_entry_safe(page, next, &held, lru) {
		list_del(&page->lru);
		__free_pages(page, order);
	}
	pr_info("oomtrace_allocfail: flood: %d of %d order-%d allocations failed in %lld us\n", failed, i, order, us);
	return -EAGAIN;
}

static int __init oomtrace_allocfail_init(void)
{
	int i, failed = 0;

	if (flood)
		return allocfail_flood();
	if (tries > MAX_TRIES)
		tries = MAX_TRIES;
	for (i = 0; i < tries; i++) {
		pages[i] = alloc_pages(GFP_KERNEL | __GFP_NORETRY, order);
		if (!pages[i])
			failed++;
	}
	if (hold_ms > 0)
		msleep(hold_ms);
	for (i = 0; i < tries; i++)
		if (pages[i])
			__free_pages(pages[i], order);
	pr_info("oomtrace_allocfail: %d of %d order-%d allocations failed\n", failed, tries, order);
	return -EAGAIN;
}

module_init(oomtrace_allocfail_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("oomtrace test: high-order page allocation failures");
