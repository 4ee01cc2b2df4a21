// SPDX-License-Identifier: Apache-2.0

// Package event defines the records oomtrace reports, one JSON object per
// event (docs/events.md), and how they are encoded. Decoding the kernel's
// records into events is internal/probe's, next to the ring buffer.
//
// The package owns that contract and imports nothing of the project: the
// packages that read cgroups and /proc produce values, and this one
// defines how they look on the line. Every type here encodes itself
// without reflection (encode.go); the json tags serve readers of the
// lines (tests, tools) and must name the same keys, which the round-trip
// test checks. The JSON names are a contract: later versions add fields,
// never rename.
package event

import "time"

// Event kinds, the "event" field.
const (
	KindOOMKill = "oom_kill"
	// KindOOMVictimExiting: the OOM killer picked a task that was already
	// exiting and let it finish instead of sending SIGKILL. No kill
	// happened; /proc/vmstat oom_kill does not count it.
	KindOOMVictimExiting = "oom_victim_exiting"
	// KindMemcgOOM: one memory cgroup OOM, whether or not a victim was
	// found. A memcg OOM with no killable task shows up only here.
	KindMemcgOOM = "memcg_oom"
	// KindAllocFailure: a page allocation failed.
	KindAllocFailure = "alloc_failure"
	// KindAllocFailuresFolded: page allocation failures of one (memory
	// cgroup, order, gfp) that the kernel counted without an
	// alloc_failure line each, because that key (or all keys together)
	// failed faster than the agent's record rate. One line per key and
	// interval while it floods: the counts are exact.
	KindAllocFailuresFolded = "alloc_failures_folded"
)

// Constraint values: which memory domain ran out.
const (
	ConstraintMemcg     = "memcg"
	ConstraintGlobal    = "global"
	ConstraintCpuset    = "cpuset"
	ConstraintMempolicy = "mempolicy"
)

// Event is one line of output.
type Event struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	Node  string    `json:"node"`

	// Diagnosis says why, most telling first (docs/events.md lists the codes).
	Diagnosis []Finding `json:"diagnosis,omitempty"`

	// OOMID is shared by every record of one OOM: the oom_kill lines of a
	// group kill and the memcg_oom record of the same invocation.
	OOMID     uint64 `json:"oom_id,omitempty"`
	GroupKill bool   `json:"group_kill,omitempty"`

	Victim     *Victim     `json:"victim,omitempty"`
	Trigger    *Trigger    `json:"trigger,omitempty"`
	Constraint string      `json:"constraint,omitempty"`
	Memcg      *Memcg      `json:"memcg,omitempty"`
	OOM        *OOMContext `json:"oom,omitempty"`
	Alloc      *Alloc      `json:"alloc,omitempty"`
	// Folded (alloc_failures_folded): how many failures of Alloc's key
	// were counted only, and when.
	Folded *Folded `json:"folded,omitempty"`
	K8s    *K8s    `json:"k8s,omitempty"`

	// VictimFound (memcg_oom): the OOM killer killed a task in this call;
	// Victims counts them. Handled is what the kernel function returned:
	// true also when a victim from before was still dying, or memory was
	// freed meanwhile, and the charge is retried; false means the charge
	// fails (ENOMEM, or a page fault retried).
	VictimFound *bool   `json:"victim_found,omitempty"`
	Victims     *uint32 `json:"victims,omitempty"`
	Handled     *bool   `json:"oom_handled,omitempty"`

	// Stack is the trigger's kernel stack, innermost frame first.
	Stack []string `json:"stack,omitempty"`

	// Tasks: the largest tasks of the OOM cgroup (or the node) when the
	// agent looked, by the kernel's points, at most 10.
	Tasks []Task `json:"tasks,omitempty"`
	// TmpfsMounts: tmpfs file systems mounted by the OOM cgroup's tasks.
	TmpfsMounts []string `json:"tmpfs_mounts,omitempty"`
	// Buddy (alloc_failure): free blocks per order of each zone of the node.
	Buddy []Zone `json:"buddy,omitempty"`
}

// Finding is one cause: a stable code and a sentence with the numbers.
type Finding struct {
	Code    string `json:"code"`
	Summary string `json:"summary"`
}

// OOMContext is the OOM killer's own view (struct oom_control), present
// where a function hook on oom_kill_process or mem_cgroup_out_of_memory
// could attach.
type OOMContext struct {
	// DomainBytes is the size of the memory that ran out: the cgroup's
	// limit, or the node's RAM and swap. Not the victim's size.
	DomainBytes  uint64 `json:"domain_bytes,omitempty"`
	ChosenPoints int64  `json:"chosen_points,omitempty"`
	GFPMask      uint32 `json:"gfp_mask"`
	GFP          string `json:"gfp"`
	// Order of the allocation that failed; -1 for an OOM forced by sysrq.
	Order int32 `json:"order"`
}

// Alloc is a failed page allocation.
type Alloc struct {
	Order   uint32 `json:"order"`
	GFPMask uint32 `json:"gfp_mask"`
	GFP     string `json:"gfp"`
	// NoWarn: the caller said it copes with failure (__GFP_NOWARN); the
	// kernel logs nothing for these.
	NoWarn bool `json:"nowarn"`
	// MemcgCharge: an accounted (__GFP_ACCOUNT) allocation by a task in a
	// memory cgroup: the failure may be the cgroup's kernel memory charge,
	// not the buddy allocator.
	MemcgCharge bool `json:"memcg_charge"`
	// Node is the NUMA node of the CPU that allocated; -1 on an
	// alloc_failures_folded line (failures on any node).
	Node int32 `json:"node"`
	// Source is the hook that saw it: warn_alloc or mm_page_alloc.
	Source string `json:"source"`
	// FreeBytes on the node when the agent looked, and how much of it is
	// in blocks of the failed order or larger: a large first and a small
	// second is fragmentation.
	FreeBytes               *uint64 `json:"free_bytes,omitempty"`
	FreeBytesAtOrAboveOrder *uint64 `json:"free_bytes_at_or_above_order,omitempty"`
	// CgroupID is the kernel's id (the directory's inode number) of the
	// trigger's memory cgroup: with Order and GFPMask, the key floods are
	// folded by. 0 where the kernel has no memory cgroups.
	CgroupID uint64 `json:"cgroup_id,omitempty"`
}

// Folded is what an alloc_failures_folded line counts: failures of one
// key (Alloc's cgroup_id, order and gfp_mask) since the previous such
// line for the key, or since its first failure.
type Folded struct {
	// Count: failures counted in the kernel without a line of their own.
	Count uint64 `json:"count"`
	// Records: alloc_failure lines of the same key in the same span;
	// Count + Records is every failure of the key in it.
	Records uint64 `json:"records"`
	// Cgroup is the trigger's memory cgroup, as the key's alloc_failure
	// lines named it; empty when none did (the global record rate
	// folded every failure of the key).
	Cgroup string `json:"cgroup,omitempty"`
	// CgroupHex: as Victim's.
	CgroupHex       string `json:"cgroup_hex,omitempty"`
	CgroupTruncated bool   `json:"cgroup_truncated,omitempty"`
	// Since: the span's start; Last: the key's latest failure in it.
	Since time.Time `json:"since"`
	Last  time.Time `json:"last"`
}

// Victim is the task the OOM killer chose.
type Victim struct {
	PID   uint32 `json:"pid"`
	TID   uint32 `json:"tid"`
	NSPID uint32 `json:"ns_pid"`
	Comm  string `json:"comm"`
	// CommHex: Comm's exact bytes in hex, when they are not valid UTF-8
	// (Comm then holds U+FFFD for each invalid byte). The encoder writes
	// it from Comm, as for every *Hex field; it is here for readers.
	CommHex     string `json:"comm_hex,omitempty"`
	UID         uint32 `json:"uid"`
	OOMScoreAdj int32  `json:"oom_score_adj"`
	// Cgroup is the victim's memory cgroup, relative to the memory
	// hierarchy's root, starting with "/".
	Cgroup string `json:"cgroup"`
	// CgroupHex: Cgroup's exact bytes, when they are not valid UTF-8.
	CgroupHex string `json:"cgroup_hex,omitempty"`
	// CgroupTruncated: the path was deeper or longer than the kernel side
	// walks (16 levels, 512 bytes before the last name); Cgroup is partial.
	CgroupTruncated bool `json:"cgroup_truncated,omitempty"`
	// CgroupStat is the victim's own cgroup's memory.stat, when that is
	// not the cgroup whose limit fired.
	CgroupStat    *MemoryStat `json:"cgroup_stat,omitempty"`
	RSS           RSS         `json:"rss"`
	SwapBytes     uint64      `json:"swap_bytes"`
	TotalVMBytes  uint64      `json:"total_vm_bytes"`
	PgtablesBytes uint64      `json:"pgtables_bytes"`
}

// RSS is the victim's resident memory by kind, as the kernel counts it for
// its "Killed process" line.
type RSS struct {
	AnonBytes  uint64 `json:"anon_bytes"`
	FileBytes  uint64 `json:"file_bytes"`
	ShmemBytes uint64 `json:"shmem_bytes"`
}

// Trigger is the task whose allocation ran into the limit.
type Trigger struct {
	PID   uint32 `json:"pid"`
	TID   uint32 `json:"tid"`
	NSPID uint32 `json:"ns_pid"`
	Comm  string `json:"comm"`
	// CommHex, CgroupHex: as Victim's.
	CommHex   string `json:"comm_hex,omitempty"`
	Cgroup    string `json:"cgroup"`
	CgroupHex string `json:"cgroup_hex,omitempty"`
	// CgroupTruncated: as Victim's; Cgroup is partial.
	CgroupTruncated bool `json:"cgroup_truncated,omitempty"`
}

// Memcg is the memory cgroup whose limit fired.
type Memcg struct {
	Path string `json:"path"`
	// PathHex: Path's exact bytes, when they are not valid UTF-8.
	PathHex string `json:"path_hex,omitempty"`
	// PathTruncated: Path was derived from a cut cgroup path (see
	// Victim.CgroupTruncated): it names the right cgroup's last levels
	// only, so nothing is read from it.
	PathTruncated bool   `json:"path_truncated,omitempty"`
	LimitBytes    uint64 `json:"limit_bytes"`
	UsageBytes    uint64 `json:"usage_bytes"`
	// Failcnt: how often usage hit the limit since the cgroup was made.
	Failcnt uint64 `json:"failcnt"`
	// Stat is the cgroup's memory.stat, read when the agent got the event,
	// StatDelayUS microseconds after the kernel saw it; StatError says why
	// it is missing (the cgroup may be gone already).
	Stat        *MemoryStat `json:"stat,omitempty"`
	StatDelayUS *int64      `json:"stat_delay_us,omitempty"`
	StatError   string      `json:"stat_error,omitempty"`
}

// K8s is the pod and container the cgroup path names, with the names
// the container runtime (CRI) or the Kubernetes API gives them.
type K8s struct {
	// Namespace, Pod and Container are the names kubelet gave; empty when
	// no source knew the pod (LookupError says why) or, for Container,
	// when the cgroup is the pod's own.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`
	// Workload is the pod's controller, from the Kubernetes API only.
	Workload    *Workload `json:"workload,omitempty"`
	PodUID      string    `json:"pod_uid"`
	ContainerID string    `json:"container_id,omitempty"`
	// Runtime: containerd, docker or cri-o, where the path says.
	Runtime string `json:"runtime,omitempty"`
	QOS     string `json:"qos"`
	// PodStat is the pod cgroup's memory.stat, when the cgroup whose limit
	// fired is not the pod's.
	PodStat *MemoryStat `json:"pod_stat,omitempty"`
	// LookupError says which names could not be found and why (a source
	// unreachable, or none that knows the pod); the rest of the event is
	// complete.
	LookupError string `json:"lookup_error,omitempty"`
}

// Workload is what owns a pod: a Deployment rather than its ReplicaSet
// where that can be told, else the owner reference's kind and name
// (StatefulSet, DaemonSet, Job, a custom resource, ...).
type Workload struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// MemoryStat is what filled a cgroup, from its memory.stat.
type MemoryStat struct {
	AnonBytes uint64 `json:"anon_bytes"`
	// FileBytes is page cache, without shmem.
	FileBytes uint64 `json:"file_bytes"`
	// ShmemBytes: tmpfs, emptyDir medium Memory, /dev/shm, SysV shm.
	ShmemBytes uint64 `json:"shmem_bytes"`
	// KernelBytes: slab, kernel stacks, page tables, sockets, percpu, and
	// vmalloc where the kernel exposes it.
	KernelBytes        uint64 `json:"kernel_bytes"`
	FileDirtyBytes     uint64 `json:"file_dirty_bytes"`
	FileWritebackBytes uint64 `json:"file_writeback_bytes"`
	UnevictableBytes   uint64 `json:"unevictable_bytes"`
}

// Task is one process of the OOM cgroup (or the node) as the agent saw it.
type Task struct {
	PID int `json:"pid"`
	// NSPID is the pid in the task's own (innermost) pid namespace.
	NSPID int    `json:"ns_pid"`
	Comm  string `json:"comm"`
	// CommHex: as Victim's.
	CommHex       string `json:"comm_hex,omitempty"`
	RSSBytes      uint64 `json:"rss_bytes"`
	AnonBytes     uint64 `json:"anon_bytes"`
	FileBytes     uint64 `json:"file_bytes"`
	ShmemBytes    uint64 `json:"shmem_bytes"`
	SwapBytes     uint64 `json:"swap_bytes"`
	PgtablesBytes uint64 `json:"pgtables_bytes"`
	OOMScoreAdj   int    `json:"oom_score_adj"`
	// Points is the kernel's oom_badness score for the task.
	Points int64 `json:"points"`
}

// Zone is one memory zone's free blocks by order.
type Zone struct {
	Node int    `json:"node"`
	Zone string `json:"zone"`
	// FreeBlocks[order] is how many free blocks of 2^order pages it has.
	FreeBlocks []uint64 `json:"free_blocks"`
}
