// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/kube"
	"github.com/oomtrace/oomtrace/internal/procfs"
)

// maxTasks bounds the task table kept per event.
const maxTasks = 10

// enricher adds, the moment an event arrives, what user space can still
// see: pod identity and names, memory.stat of the cgroups involved, the
// largest tasks, free memory by order, and the diagnosis. Nothing here
// can drop an event: what cannot be read is left out and, for memory.stat
// and names, said.
type enricher struct {
	hier     *cgroup.Hierarchy // nil without a memory hierarchy
	names    Namer             // nil: no names
	pageSize uint64
	memTotal uint64
	gfp      gfpBits
}

// gfpBits are the GFP flags whose bits differ between kernels that decide
// which free blocks an allocation could use.
type gfpBits struct {
	dma, movable, directReclaim uint32
}

// Namer names a pod and its container from the IDs in a cgroup path, as
// they were at time at, in a bounded time (kube.Resolver). The error says
// what could not be named and why; the names returned are good either way.
type Namer interface {
	Names(at time.Time, podUID, containerID string) (kube.Names, error)
}

func newEnricher(hier *cgroup.Hierarchy, gfp gfpBits, names Namer) *enricher {
	return &enricher{hier: hier, names: names, pageSize: uint64(os.Getpagesize()), memTotal: memTotal(), gfp: gfp}
}

// enrich adds what it can to e.
func (en *enricher) enrich(e *event.Event) { en.enrichTimed(e, nil) }

// enrichTimed is enrich with each step timed in t (nil: none).
func (en *enricher) enrichTimed(e *event.Event, t *timing) {
	t.timeStep(stepIdentity, func() {
		switch {
		case e.Victim != nil:
			e.K8s = k8sOf(cgroup.Identify(e.Victim.Cgroup))
		case e.Memcg != nil:
			e.K8s = k8sOf(cgroup.Identify(e.Memcg.Path))
		case e.Trigger != nil:
			e.K8s = k8sOf(cgroup.Identify(e.Trigger.Cgroup))
		case e.Folded != nil && e.Folded.Cgroup != "":
			e.K8s = k8sOf(cgroup.Identify(e.Folded.Cgroup))
		}
	})
	// Names come from the container runtime and the Kubernetes API,
	// which may take up to their timeout to answer; the local reads
	// below, memory.stat first while the victim's memory is still being
	// freed, do not wait for them.
	var named chan struct{}
	if e.K8s != nil && en.names != nil {
		named = make(chan struct{})
		go func() {
			defer close(named)
			t.timeStep(stepNames, func() { en.name(e.Time, e.K8s) })
		}()
	}
	if en.hier != nil {
		// The reads fill separate fields of e and do not depend on one
		// another: they run side by side, so an event waits for its
		// slowest read rather than for their sum (a memory.stat read right
		// after a kill pays the kernel's flush of per-CPU counters), and
		// in a storm the next event waits that much less. The limited
		// cgroup's memory.stat is read here, first.
		var wg sync.WaitGroup
		var pids []int
		wg.Add(2)
		go func() { defer wg.Done(); en.otherStats(e, t) }()
		go func() { defer wg.Done(); pids = en.taskTable(e, t) }()
		en.limitedStat(e, t)
		wg.Wait()
		en.tmpfs(e, pids, t)
	}
	if named != nil {
		<-named
	}
	if e.Event == event.KindAllocFailure {
		// Not for folded counts: they span many moments, on any node.
		t.timeStep(stepBuddy, func() { en.buddy(e) })
	}
	t.timeStep(stepDiagnose, func() {
		node := diagnose.Node{MemTotalBytes: en.memTotal, PageSize: en.pageSize}
		if e.Constraint == event.ConstraintGlobal && en.hier != nil {
			node.TopCgroups = en.hier.TopUsage(5, 3)
		}
		e.Diagnosis = diagnose.Diagnose(e, node)
	})
}

// limitedStat reads memory.stat of the cgroup whose limit fired.
func (en *enricher) limitedStat(e *event.Event, t *timing) {
	if m := e.Memcg; m != nil && m.PathTruncated {
		// Only the last levels of a deeper path: reading it would read
		// another cgroup, or none.
		m.StatError = "not read: the cgroup's path was cut (deeper than the kernel side walks)"
	} else if m != nil {
		var st cgroup.MemoryStat
		var err error
		t.timeStep(stepMemcgStat, func() { st, err = en.hier.ReadMemoryStat(m.Path) })
		delay := time.Since(e.Time).Microseconds()
		m.StatDelayUS = &delay
		switch {
		case errors.Is(err, cgroup.ErrCgroupGone):
			m.StatError = "the cgroup was removed before its memory.stat could be read"
		case err != nil:
			m.StatError = err.Error()
		default:
			m.Stat = memoryStatOf(st)
		}
	}
}

// otherStats reads memory.stat of the victim's cgroup and the pod's, where
// they differ from the cgroup whose limit fired.
func (en *enricher) otherStats(e *event.Event, t *timing) {
	if v := e.Victim; v != nil && !v.CgroupTruncated && (e.Memcg == nil || v.Cgroup != e.Memcg.Path) && v.Cgroup != "/" {
		t.timeStep(stepVictimStat, func() {
			if st, err := en.hier.ReadMemoryStat(v.Cgroup); err == nil {
				v.CgroupStat = memoryStatOf(st)
			}
		})
	}
	if e.K8s != nil && e.Victim != nil && !e.Victim.CgroupTruncated {
		if pod := cgroup.PodPath(e.Victim.Cgroup); pod != "" && (e.Memcg == nil || pod != e.Memcg.Path) {
			t.timeStep(stepPodStat, func() {
				if st, err := en.hier.ReadMemoryStat(pod); err == nil {
					e.K8s.PodStat = memoryStatOf(st)
				}
			})
		}
	}
}

// taskTable fills the task table of the OOM cgroup and returns the pids it
// looked at (for tmpfs).
//
// Dying tasks are not read: /proc/PID/status takes a reference on the
// task's memory, and a victim whose exit finishes while the agent holds
// it keeps its memory charged a moment longer with no victim pending,
// which is when the kernel kills a second task. The agent must not widen
// that window. The victim's numbers come from the kernel side instead,
// and a group kill, where every task is dying, gets no table.
func (en *enricher) taskTable(e *event.Event, t *timing) (pids []int) {
	if e.Event == event.KindAllocFailure || e.Memcg == nil || e.Memcg.PathTruncated || e.GroupKill {
		return nil
	}
	t.timeStep(stepTasks, func() {
		var err error
		if pids, err = en.hier.Procs(e.Memcg.Path); err != nil || len(pids) == 0 {
			pids = nil
			return
		}
		if e.Victim != nil {
			pids = slices.DeleteFunc(pids, func(p int) bool { return p == int(e.Victim.PID) })
		}
		domain := e.Memcg.LimitBytes / en.pageSize
		for _, task := range procfs.TopTasks(pids, maxTasks, domain, en.pageSize) {
			e.Tasks = append(e.Tasks, event.Task{
				PID: task.PID, NSPID: task.NSPID, Comm: task.Comm, RSSBytes: task.RSSBytes, AnonBytes: task.AnonBytes, FileBytes: task.FileBytes,
				ShmemBytes: task.ShmemBytes, SwapBytes: task.SwapBytes, PgtablesBytes: task.PgtablesBytes, OOMScoreAdj: task.OOMScoreAdj, Points: task.Points,
			})
		}
	})
	return pids
}

// tmpfs lists the tmpfs mounts of the OOM cgroup's tasks (pids) when shmem
// is a large share of its memory.
func (en *enricher) tmpfs(e *event.Event, pids []int, t *timing) {
	if pids == nil { // no task table: e.Memcg may be nil
		return
	}
	if st := e.Memcg.Stat; st != nil && st.ShmemBytes*4 >= e.Memcg.UsageBytes {
		t.timeStep(stepTmpfs, func() { e.TmpfsMounts = procfs.TmpfsMounts(pids, 16) })
	}
}

// buddy records free memory by order on the failing allocation's node,
// and how much of it the allocation could have used.
//
// On x86-64 the usable memory leaves out the 16 MiB DMA zone unless the
// allocation asked for it: the kernel keeps it for __GFP_DMA
// (lowmem_reserve), so its blocks are no help to anything else, as in seed
// 003. On arm64 the DMA zone is the low GiBs of RAM (all of a small
// machine's, as in the kernel matrix's VMs) and serves every allocation.
// Where /proc/pagetypeinfo can be read (root), the usable memory also
// leaves out the free blocks of migrate types the allocation cannot take
// (procfs.UsableBy): the CMA area that Debian's arm64 kernels keep, 64 MiB
// of free blocks of every order that an unmovable allocation cannot have.
func (en *enricher) buddy(e *event.Event) {
	dmaReserved := runtime.GOARCH == "amd64"
	zones, err := procfs.ReadBuddyInfo()
	if err != nil {
		return
	}
	mask := e.Alloc.GFPMask
	onNode := func(z procfs.Zone) bool { return z.Node == int(e.Alloc.Node) }
	usableZone := func(z procfs.Zone) bool {
		return onNode(z) && (z.Zone != "DMA" || !dmaReserved || mask&en.gfp.dma != 0)
	}
	for _, z := range zones {
		if onNode(z) {
			e.Buddy = append(e.Buddy, event.Zone{Node: z.Node, Zone: z.Zone, FreeBlocks: z.Free})
		}
	}
	usable := slices.DeleteFunc(slices.Clone(zones), func(z procfs.Zone) bool { return !usableZone(z) })
	if types, err := procfs.ReadPageTypeInfo(); err == nil {
		movable, atomic := mask&en.gfp.movable != 0, mask&en.gfp.directReclaim == 0
		usable = procfs.WithoutTypes(usable, types, func(typ string) bool { return !procfs.UsableBy(typ, movable, atomic) })
	}
	free := procfs.FreeBytes(usable, en.pageSize)
	above := procfs.FreeBytesAtOrAbove(usable, int(e.Alloc.Order), en.pageSize)
	e.Alloc.FreeBytes, e.Alloc.FreeBytesAtOrAboveOrder = &free, &above
}

// k8sOf is how a pod identity looks in an event.
func k8sOf(id *cgroup.PodIdentity) *event.K8s {
	if id == nil {
		return nil
	}
	return &event.K8s{PodUID: id.PodUID, ContainerID: id.ContainerID, Runtime: id.Runtime, QOS: id.QOS}
}

// name adds the pod's and container's names.
func (en *enricher) name(at time.Time, k *event.K8s) {
	n, err := en.names.Names(at, k.PodUID, k.ContainerID)
	k.Namespace, k.Pod, k.Container = n.Namespace, n.Pod, n.Container
	if w := n.Workload; w != nil {
		k.Workload = &event.Workload{Kind: w.Kind, Name: w.Name}
	}
	if err != nil {
		k.LookupError = err.Error()
	}
}

// memoryStatOf is how a memory.stat reading looks in an event: the same
// numbers, field for field (a conversion, so a field added to one and
// not the other fails to compile).
func memoryStatOf(st cgroup.MemoryStat) *event.MemoryStat {
	m := event.MemoryStat(st)
	return &m
}

// memTotal is the node's memory as kubelet sees its capacity.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
