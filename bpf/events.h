/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records that the BPF programs write into the ring buffer. bpf2go turns
 * these into Go types (-type), so C and Go layouts cannot drift. Every
 * record starts with struct event_header; Go dispatches on header.kind.
 * Only fixed-width types and explicit padding: the layout is a contract.
 */
#ifndef OOMTRACE_EVENTS_H
#define OOMTRACE_EVENTS_H

#define OOMTRACE_COMM_LEN 16
/* Path buffer: a component may start anywhere below CGROUP_PATH_SOFT_MAX
 * and be up to NAME_MAX long, so the buffer is twice the soft maximum. */
#define CGROUP_PATH_SOFT_MAX 512
#define CGROUP_PATH_BUF (2 * CGROUP_PATH_SOFT_MAX)
/* Deepest cgroup walked for a path; kubelet's deepest is 4 below root. */
#define CGROUP_MAX_DEPTH 16
/* Memory cgroup levels whose page counters are captured, leaf first. */
#define MEMCG_MAX_LEVELS 8

/* Kernel stack frames kept per event. */
#define STACK_MAX_DEPTH 32

enum event_kind {
	EVENT_OOM_KILL = 1,           /* the OOM killer sent SIGKILL to a task */
	EVENT_OOM_VICTIM_EXITING = 2, /* victim was already exiting: marked, not killed */
	EVENT_MEMCG_OOM = 3,          /* one mem_cgroup_out_of_memory() invocation */
	EVENT_ALLOC_FAILURE = 4,      /* a page allocation failed */
	EVENT_KIND_MAX = 5,
};

/* Counters of what the BPF side did not deliver, or chose not to. */
enum counter {
	COUNTER_RINGBUF_FULL = 0,      /* record lost: ring buffer full */
	COUNTER_SEEN_MAP_FULL = 1,     /* OOM kill counter not remembered */
	COUNTER_CTX_MAP_FULL = 2,      /* OOM context not remembered */
	COUNTER_ALLOC_NOWARN = 3,      /* __GFP_NOWARN failure counted, not reported */
	COUNTER_ALLOC_BELOW_ORDER = 4, /* failure below --alloc-min-order */
	COUNTER_FILTERED = 5,          /* record not written: the session's filter drops it */
	COUNTER_ALLOC_FAILURES = 6,    /* failures tallied: written as records or folded */
	COUNTER_ALLOC_FOLDED = 7,      /* failures folded into their key's tally, no record */
	COUNTER_MAX = 8,
};

/* Where an alloc_failure record came from. */
enum alloc_source {
	ALLOC_SOURCE_WARN_ALLOC = 1,    /* kprobe on warn_alloc(): slow-path failures */
	ALLOC_SOURCE_MM_PAGE_ALLOC = 2, /* tp_btf kmem:mm_page_alloc with page == NULL */
};

struct event_header {
	__u64 boot_ns; /* bpf_ktime_get_boot_ns() */
	__u32 kind;    /* enum event_kind */
	__u32 cpu;
};

struct task_info {
	__u32 pid;    /* tgid */
	__u32 tid;
	__u32 ns_pid; /* tgid in the task's own pid namespace */
	__u32 uid;
	__s32 oom_score_adj;
	__u32 _pad;
	char comm[OOMTRACE_COMM_LEN];
};

struct cgroup_path {
	__u64 id;        /* kernfs node id: the cgroup directory's inode number */
	__u16 len;       /* bytes in path, without NUL */
	__u8 truncated;  /* deeper or longer than the buffer: path is incomplete */
	__u8 depth;      /* components below the hierarchy root */
	__u32 _pad;
	char path[CGROUP_PATH_BUF];
};

/* Page counter of one memory cgroup level, in pages. */
struct memcg_level {
	__u64 cgroup_id;
	__u64 usage_pages;
	__u64 max_pages;
	__u64 failcnt;
	__u64 oom_events; /* memory_events_local[MEMCG_OOM]: OOMs at this level */
};

struct kernel_stack {
	__u32 depth; /* frames in ips */
	__u32 _pad;
	__u64 ips[STACK_MAX_DEPTH];
};

/*
 * struct oom_control as oom_kill_process() sees it, joined to the
 * mark_victim records of the same OOM. valid is 0 where no function hook
 * could attach (tracepoint tier): user space then infers what it can.
 */
struct oom_context {
	__u64 oom_id;      /* shared by every record of one OOM */
	__u64 totalpages;  /* the OOM domain's size: the limit, or RAM + swap */
	__s64 chosen_points;
	__u64 memcg_id;    /* kernfs id of oc->memcg; 0 for a global OOM */
	__u32 gfp_mask;
	__s32 order;       /* -1 for a sysrq-triggered OOM */
	__u32 constraint;  /* enum oom_constraint */
	__u8 valid;
	__u8 group_kill;   /* the victim's memcg (or an ancestor) has memory.oom.group */
	__u16 _pad;
};

struct oom_kill_event {
	struct event_header hdr;
	struct task_info victim;
	struct task_info trigger;
	/* victim's mm, in pages except pgtables */
	__u64 rss_anon_pages;
	__u64 rss_file_pages;
	__u64 rss_shmem_pages;
	__u64 swap_entries;
	__u64 total_vm_pages;
	__u64 pgtables_bytes;
	/* memory_events_local[MEMCG_OOM_KILL] of the victim's memcg */
	__u64 memcg_oom_kills;
	__u32 nr_levels;
	__u32 _pad;
	struct memcg_level levels[MEMCG_MAX_LEVELS]; /* victim's memcg first */
	struct cgroup_path victim_cgroup;
	struct cgroup_path trigger_cgroup;
	struct oom_context oom;
	struct kernel_stack stack; /* the trigger's: how it got into the OOM */
};

struct memcg_oom_event {
	struct event_header hdr;
	struct task_info trigger;
	__u64 oom_id;
	__u32 gfp_mask;
	__s32 order;
	__u32 victims;      /* tasks marked during this invocation */
	__u8 victim_found;  /* mem_cgroup_out_of_memory() returned true */
	__u8 _pad[3];
	__u32 nr_levels;
	__u32 _pad2;
	struct memcg_level levels[MEMCG_MAX_LEVELS]; /* the OOM memcg first */
	struct cgroup_path memcg_cgroup;
	struct cgroup_path trigger_cgroup;
	struct kernel_stack stack;
};

struct alloc_failure_event {
	struct event_header hdr;
	struct task_info trigger;
	__u32 order;
	__u32 gfp_mask;
	__u32 source; /* enum alloc_source */
	__s32 node;   /* NUMA node of the CPU that allocated */
	struct cgroup_path trigger_cgroup;
	struct kernel_stack stack;
};

/*
 * Allocation failure floods (alloctally.h). A key is what a folded count
 * is reported per: the trigger's memory cgroup, the order, the flags.
 */
struct alloc_key {
	__u64 memcg_id; /* kernfs id of the trigger's memcg; 0: none */
	__u32 order;
	__u32 gfp_mask;
};

/* One key's counts since its entry was made (first_ns). The counts only
 * grow: user space reports differences. */
struct alloc_tally {
	__u64 tat;      /* the key's token bucket: see bucket_conforms() */
	__u64 records;  /* failures written as alloc_failure records */
	__u64 folded;   /* failures counted only */
	__u64 first_ns; /* boot ns the entry was made: a new entry restarts the counts */
	__u64 last_ns;  /* boot ns of the key's latest failure */
};

/* A token bucket's rate and burst, in the form the programs use. */
struct alloc_bucket {
	__u64 interval_ns;  /* 1 s / rate; 0: no limit */
	__u64 tolerance_ns; /* (burst - 1) × interval_ns */
};

struct alloc_limits {
	struct alloc_bucket key;   /* per key */
	struct alloc_bucket total; /* every key together */
};

#endif
