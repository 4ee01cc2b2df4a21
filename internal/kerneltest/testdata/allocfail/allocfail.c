// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test module: makes warned high-order page allocation failures with a
 * known stack. Its init asks for blocks of 2^order pages (default order
 * 10, 4 MiB) that the VM's small memory cannot always give, holds what it
 * got for hold_ms (so free memory can be looked at meanwhile), frees it,
 * and fails with -EAGAIN so it never stays loaded.
 */
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/module.h>

#define MAX_TRIES 1024

static int order = 10;
module_param(order, int, 0444);
static int tries = 200;
module_param(tries, int, 0444);
static int hold_ms;
module_param(hold_ms, int, 0444);

static struct page *pages[MAX_TRIES];

static int __init oomtrace_allocfail_init(void)
{
	int i, failed = 0;

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
