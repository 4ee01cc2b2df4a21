// SPDX-License-Identifier: Apache-2.0

// Package diagnose turns an event's numbers into causes: a list of
// findings, each a code and one plain sentence with the numbers in it.
// Every rule is documented in docs/events.md; each is a pure function of
// the event, so tests can check that it fires where it should and
// nowhere else.
package diagnose

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/procfs"
)

// Codes.
const (
	ShmemDominant        = "shmem_dominant"
	PageCacheDominant    = "page_cache_dominant"
	KernelMemoryDominant = "kernel_memory_dominant"
	PodLimit             = "pod_limit"
	ContainerLimit       = "container_limit"
	NonInitVictim        = "non_init_victim"
	VictimNotLargest     = "victim_not_largest"
	QOSOOMScoreAdj       = "qos_oom_score_adj"
	GroupKill            = "group_kill"
	GlobalOOM            = "global_oom"
	Fragmentation        = "fragmentation"
	MemcgKmemCharge      = "memcg_kmem_charge"
)

// allCodes is every code a rule can add, in the order docs/events.md lists
// them; TestCodesAreTheRules keeps it equal to the codes the rules use.
var allCodes = []string{
	ShmemDominant, PageCacheDominant, KernelMemoryDominant, PodLimit, ContainerLimit,
	NonInitVictim, VictimNotLargest, QOSOOMScoreAdj, GroupKill, GlobalOOM,
	Fragmentation, MemcgKmemCharge,
}

// Codes returns every code the rules can give, so a check of a diagnosis
// can say which codes must not be there.
func Codes() []string { return slices.Clone(allCodes) }

// Thresholds, as shares of the OOM cgroup's usage.
const (
	shmemShare     = 0.25 // tmpfs is rarely a quarter of a container's memory by design
	pageCacheShare = 0.50 // at OOM time page cache should have been reclaimed
	kernelShare    = 0.25
)

// Node is what the rules need to know about the node.
type Node struct {
	MemTotalBytes uint64 // /proc/meminfo MemTotal: kubelet's memory capacity
	PageSize      uint64
	// TopCgroups: for a global OOM, the memory cgroups using most, largest first.
	TopCgroups []cgroup.Usage
}

// Diagnose returns the findings for e, most telling first.
func Diagnose(e *event.Event, n Node) []event.Finding {
	var out []event.Finding
	add := func(code, format string, args ...any) {
		out = append(out, event.Finding{Code: code, Summary: fmt.Sprintf(format, args...)})
	}
	switch e.Event {
	case event.KindOOMKill, event.KindMemcgOOM:
		limitLevel(e, add)
		breakdown(e, add)
		if e.Event == event.KindOOMKill {
			victimRules(e, n, add)
		}
		if e.Constraint == event.ConstraintGlobal {
			globalOOM(e, n, add)
		}
	case event.KindAllocFailure:
		allocRules(e, n, add)
	}
	return out
}

type addFunc func(code, format string, args ...any)

// limitLevel says which level's limit fired, pod or container.
func limitLevel(e *event.Event, add addFunc) {
	if e.Memcg == nil || e.K8s == nil {
		return
	}
	ctr := ""
	if e.Victim != nil {
		ctr = e.Victim.Cgroup
	} else if e.Trigger != nil {
		ctr = e.Trigger.Cgroup
	}
	switch {
	case isPodLevel(e.Memcg.Path) && ctr != e.Memcg.Path:
		add(PodLimit, "The pod-level limit fired (%s of %s used in %s), not a container's: the sum of the pod's containers, and anything charged to the pod cgroup itself, reached it.",
			size(e.Memcg.UsageBytes), size(e.Memcg.LimitBytes), e.Memcg.Path)
	case !isPodLevel(e.Memcg.Path) && isContainer(e.Memcg.Path):
		add(ContainerLimit, "The container's own limit fired (%s of %s used in %s), not the pod's.",
			size(e.Memcg.UsageBytes), size(e.Memcg.LimitBytes), e.Memcg.Path)
	}
}

// breakdown finds what filled the cgroup whose limit fired.
func breakdown(e *event.Event, add addFunc) {
	if e.Memcg == nil || e.Memcg.Stat == nil {
		return
	}
	st, used := e.Memcg.Stat, e.Memcg.UsageBytes
	if used == 0 {
		return
	}
	share := func(b uint64) float64 { return float64(b) / float64(used) }
	if share(st.ShmemBytes) >= shmemShare {
		msg := fmt.Sprintf("shmem (tmpfs, emptyDir with medium: Memory, /dev/shm, SysV shm) holds %s of the %s %s uses (%.0f%%); it counts against the limit like process memory, and no process's RSS shows it.",
			size(st.ShmemBytes), size(used), e.Memcg.Path, 100*share(st.ShmemBytes))
		if len(e.TmpfsMounts) > 0 {
			msg += " tmpfs mounts of the pod's processes: " + strings.Join(e.TmpfsMounts, ", ") + "."
		}
		// Seed 004's twist: a restarted container's predecessor left its
		// tmpfs pages charged to the pod cgroup, so the new container's own
		// numbers look small.
		if v := e.Victim; v != nil && v.CgroupStat != nil && v.Cgroup != e.Memcg.Path && v.CgroupStat.ShmemBytes*4 < st.ShmemBytes {
			msg += fmt.Sprintf(" The victim's own container cgroup holds only %s of it: the rest is charged to %s itself, typically by an earlier container of the pod whose emptyDir outlived it.",
				size(v.CgroupStat.ShmemBytes), e.Memcg.Path)
		}
		add(ShmemDominant, "%s", msg)
	}
	if share(st.FileBytes) >= pageCacheShare {
		add(PageCacheDominant, "Page cache holds %s of the %s %s uses (%.0f%%), %s of it dirty or under writeback: cache the kernel could not reclaim fast enough, or that is locked or mapped.",
			size(st.FileBytes), size(used), e.Memcg.Path, 100*share(st.FileBytes), size(st.FileDirtyBytes+st.FileWritebackBytes))
	}
	if share(st.KernelBytes) >= kernelShare {
		add(KernelMemoryDominant, "Kernel memory (slab, stacks, page tables, sockets) holds %s of the %s %s uses (%.0f%%): look for many sockets, files, threads or dentries.",
			size(st.KernelBytes), size(used), e.Memcg.Path, 100*share(st.KernelBytes))
	}
}

// victimRules explain the choice of victim.
func victimRules(e *event.Event, n Node, add addFunc) {
	v := e.Victim
	if v == nil {
		return
	}
	if e.GroupKill {
		add(GroupKill, "memory.oom.group is set: the kernel killed every task of the cgroup, not only the one it chose (%s, pid %d).", v.Comm, v.PID)
	}
	// Only a victim in a pid namespace of its own (ns_pid != pid) can be
	// judged: with hostPID every process is "pid > 1".
	if e.K8s != nil && e.K8s.ContainerID != "" && v.NSPID > 1 && v.NSPID != v.PID {
		add(NonInitVictim, "The victim %s is pid %d in its container, not its main process (pid 1): the container keeps running, Kubernetes reports no OOMKilled and the restart count does not move.",
			v.Comm, v.NSPID)
	}
	if largest := largerTask(e, n); largest != nil {
		victimPoints := victimPoints(e, n)
		add(VictimNotLargest, "oom_score_adj made the kernel kill %s (pid %d, %s resident, oom_score_adj %d, %d points) rather than the larger %s (pid %d, %s resident, oom_score_adj %d, %d points).",
			v.Comm, v.PID, size(v.RSS.AnonBytes+v.RSS.FileBytes+v.RSS.ShmemBytes), v.OOMScoreAdj, victimPoints,
			largest.Comm, largest.PID, size(largest.RSSBytes), largest.OOMScoreAdj, largest.Points)
	}
	if e.K8s != nil {
		qosScoreAdj(v.OOMScoreAdj, n, add)
	}
}

// qosScoreAdj decodes oom_score_adj as kubelet sets it.
func qosScoreAdj(adj int32, n Node, add addFunc) {
	switch {
	case adj == -998:
		add(QOSOOMScoreAdj, "oom_score_adj -998: kubelet's value for Guaranteed pods (and node-critical ones).")
	case adj == 1000:
		add(QOSOOMScoreAdj, "oom_score_adj 1000: kubelet's value for BestEffort pods, the first the kernel kills on a full node.")
	case adj >= 2 && adj <= 999 && n.MemTotalBytes > 0:
		// kubelet: adj = 1000 - 1000*request/capacity, clamped to 2..999.
		req := uint64(1000-adj) * n.MemTotalBytes / 1000
		add(QOSOOMScoreAdj, "oom_score_adj %d: kubelet's value for a Burstable container with a memory request of about %s on this node (%s): adj = 1000 - 1000 × request / capacity.",
			adj, size(req), size(n.MemTotalBytes))
	}
}

// victimPoints is the victim's score as the kernel computed it, where a
// function hook saw it, else recomputed from the record.
func victimPoints(e *event.Event, n Node) int64 {
	if e.OOM != nil && e.OOM.ChosenPoints != 0 {
		return e.OOM.ChosenPoints
	}
	v := e.Victim
	t := procfs.Task{RSSBytes: v.RSS.AnonBytes + v.RSS.FileBytes + v.RSS.ShmemBytes, SwapBytes: v.SwapBytes, PgtablesBytes: v.PgtablesBytes, OOMScoreAdj: int(v.OOMScoreAdj)}
	return procfs.Points(t, domainPages(e, n), n.PageSize)
}

// largerTask returns the largest task that had more resident memory than
// the victim but was passed over because of its oom_score_adj.
func largerTask(e *event.Event, n Node) *event.Task {
	v := e.Victim
	vrss := v.RSS.AnonBytes + v.RSS.FileBytes + v.RSS.ShmemBytes
	var best *event.Task
	for i := range e.Tasks {
		t := &e.Tasks[i]
		if uint32(t.PID) == v.PID || t.RSSBytes <= vrss || t.OOMScoreAdj >= int(v.OOMScoreAdj) {
			continue
		}
		if best == nil || t.RSSBytes > best.RSSBytes {
			best = t
		}
	}
	return best
}

func domainPages(e *event.Event, n Node) uint64 {
	if n.PageSize == 0 {
		return 0
	}
	if e.OOM != nil && e.OOM.DomainBytes != 0 {
		return e.OOM.DomainBytes / n.PageSize
	}
	if e.Memcg != nil {
		return e.Memcg.LimitBytes / n.PageSize
	}
	return n.MemTotalBytes / n.PageSize
}

func globalOOM(e *event.Event, n Node, add addFunc) {
	msg := "The node ran out of memory: no cgroup limit was reached"
	if len(n.TopCgroups) > 0 {
		top := append([]cgroup.Usage(nil), n.TopCgroups...)
		sort.Slice(top, func(i, j int) bool { return top[i].UsageBytes > top[j].UsageBytes })
		var parts []string
		for _, c := range top[:min(5, len(top))] {
			parts = append(parts, fmt.Sprintf("%s %s", c.Path, size(c.UsageBytes)))
		}
		msg += "; largest cgroups: " + strings.Join(parts, ", ")
	}
	add(GlobalOOM, "%s.", msg)
}

func allocRules(e *event.Event, n Node, add addFunc) {
	a := e.Alloc
	if a == nil {
		return
	}
	block := n.PageSize << a.Order
	if a.FreeBytes != nil && a.FreeBytesAtOrAboveOrder != nil && *a.FreeBytes >= 4*block && *a.FreeBytesAtOrAboveOrder < block {
		add(Fragmentation, "Memory is fragmented: %s is free on node %d but no free block of order %d (%s contiguous) or larger; the allocation needed one. Compaction could not make one.",
			size(*a.FreeBytes), a.Node, a.Order, size(block))
	}
	if a.MemcgCharge {
		add(MemcgKmemCharge, "An accounted (__GFP_ACCOUNT) allocation by %s in %s: the failure may be that cgroup's kernel memory charge, not the page allocator.",
			e.Trigger.Comm, e.Trigger.Cgroup)
	}
}

// isPodLevel: the path is a pod's own cgroup, not a container's.
func isPodLevel(path string) bool {
	return path != "" && cgroup.PodPath(path) == path
}

func isContainer(path string) bool {
	id := cgroup.Identify(path)
	return id != nil && id.ContainerID != ""
}

var size = event.FormatBytes
