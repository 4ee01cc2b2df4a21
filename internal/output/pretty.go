// SPDX-License-Identifier: Apache-2.0

package output

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
)

// Pretty writes each event as a short incident card for a terminal: what
// happened, then why (the diagnosis), then the numbers.
type Pretty struct {
	mu       sync.Mutex
	w        io.Writer
	pageSize uint64 // for an allocation's size from its order
}

// NewPretty writes cards to w.
func NewPretty(w io.Writer) *Pretty { return &Pretty{w: w, pageSize: uint64(os.Getpagesize())} }

// Sync has nothing to flush: every card is written whole.
func (p *Pretty) Sync() error { return nil }

// Write writes one card.
func (p *Pretty) Write(e *event.Event) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s\n", headline(e), e.Time.UTC().Format("2006-01-02 15:04:05.000Z"), quote(e.Node))
	for _, f := range e.Diagnosis {
		fmt.Fprintf(&b, "  ! %s: %s\n", safetext.Escape(f.Code), safetext.Escape(f.Summary))
	}
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-8s %s\n", label, fmt.Sprintf(format, args...))
	}
	if v := e.Victim; v != nil {
		row("victim", "%s (pid %d, pid %d in its namespace, uid %d, oom_score_adj %d): anon %s, file %s, shmem %s",
			quote(v.Comm), v.PID, v.NSPID, v.UID, v.OOMScoreAdj, size(v.RSS.AnonBytes), size(v.RSS.FileBytes), size(v.RSS.ShmemBytes))
		row("", "in %s%s", quote(v.Cgroup), cut(v.CgroupTruncated))
	}
	if t := e.Trigger; t != nil {
		row("trigger", "%s (pid %d) in %s%s", quote(t.Comm), t.PID, quote(t.Cgroup), cut(t.CgroupTruncated))
	}
	if m := e.Memcg; m != nil {
		row("limit", "%s%s: %s used of %s (limit hit %d times)", quote(m.Path), cut(m.PathTruncated), size(m.UsageBytes), size(m.LimitBytes), m.Failcnt)
		if s := m.Stat; s != nil {
			row("memory", "anon %s, file %s (dirty %s, writeback %s), shmem %s, kernel %s, unevictable %s",
				size(s.AnonBytes), size(s.FileBytes), size(s.FileDirtyBytes), size(s.FileWritebackBytes), size(s.ShmemBytes), size(s.KernelBytes), size(s.UnevictableBytes))
		} else if m.StatError != "" {
			row("memory", "not read: %s", safetext.Escape(m.StatError))
		}
	} else if e.Constraint != "" {
		row("limit", "none: %s OOM", e.Constraint)
	}
	if o := e.OOM; o != nil {
		row("alloc", "%s, order %d; OOM domain %s", safetext.Escape(o.GFP), o.Order, size(o.DomainBytes))
	}
	if a := e.Alloc; a != nil {
		row("alloc", "order %d (%s) %s %s, seen by %s", a.Order, size(p.pageSize<<a.Order), safetext.Escape(a.GFP), node(a.Node), safetext.Escape(a.Source))
		if f := e.Folded; f != nil {
			in := "a cgroup no alloc_failure line named"
			if f.Cgroup != "" {
				in = quote(f.Cgroup) + cut(f.CgroupTruncated)
			}
			row("folded", "%d more failures in %s (cgroup id %d) from %s to %s, besides %d alloc_failure lines",
				f.Count, in, a.CgroupID, f.Since.UTC().Format("15:04:05.000"), f.Last.UTC().Format("15:04:05.000"), f.Records)
		}
		if a.FreeBytes != nil && a.FreeBytesAtOrAboveOrder != nil {
			row("free", "%s, of which %s in blocks of order %d or larger", size(*a.FreeBytes), size(*a.FreeBytesAtOrAboveOrder), a.Order)
		}
	}
	if k := e.K8s; k != nil {
		ctr := "pod-level cgroup"
		if k.ContainerID != "" {
			ctr = "container " + quote(k.ContainerID[:min(len(k.ContainerID), 12)])
		}
		if k.Pod != "" {
			named := "pod-level cgroup"
			switch {
			case k.Container != "":
				named = "container " + quote(k.Container)
			case k.ContainerID != "":
				named = "sandbox container"
			}
			owner := ""
			if w := k.Workload; w != nil {
				owner = quote(w.Kind) + " " + quote(w.Name) + ", "
			}
			row("pod", "%s/%s, %s (%s%s%s)", quote(k.Namespace), quote(k.Pod), named, owner, quote(k.QOS), prefixed(", ", k.Runtime))
			row("", "pod uid %s, %s", quote(k.PodUID), ctr)
		} else {
			row("pod", "%s, %s (%s%s)", quote(k.PodUID), ctr, quote(k.QOS), prefixed(", ", k.Runtime))
		}
		if k.LookupError != "" {
			row("names", "%s", safetext.Escape(k.LookupError))
		}
	}
	for i, t := range e.Tasks {
		label := ""
		if i == 0 {
			label = "tasks"
		}
		row(label, "%7d %-16s rss %9s  oom_score_adj %5d  points %d", t.PID, quote(t.Comm), size(t.RSSBytes), t.OOMScoreAdj, t.Points)
	}
	if len(e.Stack) > 0 {
		row("stack", "%s", safetext.Escape(strings.Join(e.Stack[:min(len(e.Stack), 8)], " < ")))
	}
	b.WriteString("\n")
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := io.WriteString(p.w, b.String())
	return err
}

func headline(e *event.Event) string {
	switch e.Event {
	case event.KindOOMKill:
		if e.GroupKill {
			return "OOM KILL (group)"
		}
		return "OOM KILL"
	case event.KindOOMVictimExiting:
		return "OOM: victim already exiting"
	case event.KindMemcgOOM:
		if e.Handled != nil && !*e.Handled {
			return "MEMCG OOM, nothing to kill"
		}
		return "MEMCG OOM"
	case event.KindAllocFailure:
		return "PAGE ALLOCATION FAILURE"
	case event.KindAllocFailuresFolded:
		return "PAGE ALLOCATION FAILURES, FOLDED"
	}
	return safetext.Escape(strings.ToUpper(e.Event))
}

// quote keeps names chosen by others from forging lines on a terminal.
var quote = safetext.Quote

// cut marks a path that holds only its last levels.
func cut(truncated bool) string {
	if truncated {
		return " (path cut: its last levels only)"
	}
	return ""
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + quote(s)
}

var size = event.FormatBytes

// node says where an allocation ran; -1 is any node (a folded count).
func node(n int32) string {
	if n < 0 {
		return "on any node"
	}
	return fmt.Sprintf("on node %d", n)
}
