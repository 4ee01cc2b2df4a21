// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
)

// Reasons, the Event's reason field (docs/events.md#kubernetes-events).
const (
	// ReasonOOMKilled: the container's main process (its pid 1) was
	// killed, or one whose pid in the container cannot be told.
	ReasonOOMKilled = "OOMKilled"
	// ReasonOOMKilledProcess: another process of the container was
	// killed; the container keeps running and Kubernetes shows nothing.
	ReasonOOMKilledProcess = "OOMKilledProcess"
	// ReasonSystemOOMKill: on the Node, a kill because the node (or a
	// NUMA node set) ran out of memory, not a cgroup limit. kubelet's own
	// is "SystemOOM".
	ReasonSystemOOMKill = "SystemOOMKill"
)

// Component is the Event's source.component and reportingController.
const Component = "oomtrace"

// maxMessage keeps a message within what events.k8s.io/v1 accepts (1 kB);
// core/v1 takes more, but no one reads more in kubectl describe.
const maxMessage = 1024

// report is one Event to make for one kill, built from the event line so
// the recorder keeps no reference to the event.
type report struct {
	ref     corev1.ObjectReference
	reason  string
	message string
}

// key is what folds kills into one Event: the same object, the same reason.
func (r *report) key() string {
	return string(r.ref.UID) + "/" + r.ref.Namespace + "/" + r.ref.Name + "/" + r.reason
}

// reports are the Events one event makes: an oom_kill in a named pod gets
// one on the Pod; a kill by a node-wide OOM (not a memory cgroup's limit)
// one on the Node too. unnamed: the kill is in a pod whose name is not
// known, so the Pod cannot be named.
func reports(e *event.Event, node string) (out []report, unnamed bool) {
	if e.Event != event.KindOOMKill || e.Victim == nil {
		return nil, false
	}
	if k := e.K8s; k != nil {
		if k.Namespace != "" && k.Pod != "" && k.PodUID != "" {
			out = append(out, podReport(e))
		} else {
			unnamed = true
		}
	}
	if e.Constraint != "" && e.Constraint != event.ConstraintMemcg && node != "" {
		out = append(out, nodeReport(e, node))
	}
	return out, unnamed
}

func podReport(e *event.Event) report {
	k, v := e.K8s, e.Victim
	reason := ReasonOOMKilled
	var who string
	switch {
	case hasCode(e, diagnose.NonInitVictim):
		reason = ReasonOOMKilledProcess
		who = fmt.Sprintf("process %s (pid %d, %d on the node)%s killed, not the main process: the container keeps running", safetext.Quote(v.Comm), v.NSPID, v.PID, inContainer(k.Container))
	case v.NSPID == 1 && v.PID != 1:
		who = fmt.Sprintf("main process %s (pid 1, %d on the node)%s killed", safetext.Quote(v.Comm), v.PID, inContainer(k.Container))
	default:
		who = fmt.Sprintf("process %s (pid %d)%s killed", safetext.Quote(v.Comm), v.PID, inContainer(k.Container))
	}
	return report{
		ref: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1",
			Namespace: k.Namespace, Name: k.Pod, UID: types.UID(k.PodUID),
		},
		reason:  reason,
		message: message(who, e),
	}
}

func nodeReport(e *event.Event, node string) report {
	v := e.Victim
	who := fmt.Sprintf("process %s (pid %d)", safetext.Quote(v.Comm), v.PID)
	if k := e.K8s; k != nil && k.Pod != "" {
		who += fmt.Sprintf(" of pod %s/%s%s", safetext.Quote(k.Namespace), safetext.Quote(k.Pod), inContainer(k.Container))
	}
	return report{
		// kubelet names its Node in Events the same way: the node's name
		// is its UID there too.
		ref:     corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)},
		reason:  ReasonSystemOOMKill,
		message: message(who+" killed", e),
	}
}

func inContainer(name string) string {
	if name == "" {
		return ""
	}
	return " in container " + safetext.Quote(name)
}

// message is who was killed, which limit fired, and the first finding
// that says what filled it, in a few words; the event line has the rest.
// Names chosen by others are quoted with escapes (safetext.Quote) where
// they go in, so none can add a line to kubectl describe, hold a
// terminal escape, or pass for more words of the message.
func message(who string, e *event.Event) string {
	parts := []string{who + ": " + limitFired(e)}
	if s := firstCause(e); s != "" {
		parts = append(parts, s)
	}
	msg := strings.Join(parts, "; ")
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage-3], "") + "..."
	}
	return msg
}

// limitFired says which memory ran out.
func limitFired(e *event.Event) string {
	switch e.Constraint {
	case event.ConstraintGlobal:
		return "the node ran out of memory (no cgroup limit reached)"
	case event.ConstraintCpuset:
		return "the memory of its cpuset's NUMA nodes ran out"
	case event.ConstraintMempolicy:
		return "the memory its NUMA memory policy allows ran out"
	}
	m := e.Memcg
	if m == nil {
		return "a memory cgroup limit reached"
	}
	level := "memory cgroup"
	switch {
	case hasCode(e, diagnose.PodLimit):
		level = "pod memory"
	case hasCode(e, diagnose.ContainerLimit):
		level = "container memory"
	}
	return fmt.Sprintf("%s limit %s reached (%s used)", level, quantity(m.LimitBytes), event.FormatBytes(m.UsageBytes))
}

// firstCause is the first finding, past the limit level and pid 1, told
// in a few words.
func firstCause(e *event.Event) string {
	for _, f := range e.Diagnosis {
		var st *event.MemoryStat
		if e.Memcg != nil {
			st = e.Memcg.Stat
		}
		switch f.Code {
		case diagnose.ShmemDominant:
			if st != nil {
				s := event.FormatBytes(st.ShmemBytes) + " of it is shmem (tmpfs, emptyDir with medium Memory, /dev/shm)"
				if len(e.TmpfsMounts) > 0 {
					mounts := make([]string, min(len(e.TmpfsMounts), 3))
					for i := range mounts {
						mounts[i] = safetext.Quote(e.TmpfsMounts[i])
					}
					s += " in " + strings.Join(mounts, ", ")
				}
				return s
			}
		case diagnose.PageCacheDominant:
			if st != nil {
				return event.FormatBytes(st.FileBytes) + " of it is page cache the kernel could not reclaim"
			}
		case diagnose.KernelMemoryDominant:
			if st != nil {
				return event.FormatBytes(st.KernelBytes) + " of it is kernel memory (slab, sockets, page tables)"
			}
		case diagnose.VictimNotLargest:
			return "oom_score_adj made the kernel pass over a larger process"
		case diagnose.GroupKill:
			return "memory.oom.group is set: every process of the cgroup was killed"
		}
	}
	return ""
}

func hasCode(e *event.Event, code string) bool {
	return slices.ContainsFunc(e.Diagnosis, func(f event.Finding) bool { return f.Code == code })
}

// quantity is a limit as a pod spec writes it: 128Mi, 1Gi.
func quantity(b uint64) string {
	return resource.NewQuantity(int64(b), resource.BinarySI).String()
}
