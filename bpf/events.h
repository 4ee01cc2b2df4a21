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

enum event_kind {
	EVENT_OOM_KILL = 1,           /* the OOM killer sent SIGKILL to a task */
	EVENT_OOM_VICTIM_EXITING = 2, /* victim was already exiting: marked, not killed */
};

/* Reasons a record could not be delivered, indexes into the drops map. */
enum drop_reason {
	DROP_RINGBUF_FULL = 0,
	DROP_SEEN_MAP_FULL = 1,
	DROP_REASON_MAX = 2,
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
};

#endif
