// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test module: makes warned high-order page allocation failures with a
 * known stack. Its init asks for order-10 blocks (4 MiB) that the VM's
 * small memory cannot always give, frees what it got, and fails with
 * -EAGAIN so it never stays loaded.
 */
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/module.h>

#define TRIES 200
#define ORDER 10

static struct page *pages[TRIES];

static int __init oomtrace_allocfail_init(void)
{
	int i, failed = 0;

	for (i = 0; i < TRIES; i++) {
		pages[i] = alloc_pages(GFP_KERNEL | __GFP_NORETRY, ORDER);
		if (!pages[i])
			failed++;
	}
	for (i = 0; i < TRIES; i++)
		if (pages[i])
			__free_pages(pages[i], ORDER);
	pr_info("oomtrace_allocfail: %d of %d order-%d allocations failed\n", failed, TRIES, ORDER);
	return -EAGAIN;
}

module_init(oomtrace_allocfail_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("oomtrace test: high-order page allocation failures");
