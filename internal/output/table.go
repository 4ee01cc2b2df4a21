// SPDX-License-Identifier: Apache-2.0

package output

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
)

// Table writes one line per event in fixed-width columns under a header,
// for watching a trace session on a terminal: names longer than their
// column are shortened in the middle with an ellipsis (the end of a pod's
// name tells its replicas apart), never wrapped, so the columns stay
// aligned; the diagnosis codes come last. On a terminal narrower than
// the columns, the name columns narrow first, then each row is cut at
// the terminal's edge.
type Table struct {
	mu     sync.Mutex
	w      io.Writer
	header bool
	widths []int // of the columns before DIAGNOSIS
	limit  int   // the terminal's width; 0: none
}

// NewTable writes rows to w; the header goes before the first row.
func NewTable(w io.Writer) *Table { return NewTableWidth(w, 0) }

// NewTableWidth fits the rows in width columns (0: no limit).
func NewTableWidth(w io.Writer, width int) *Table {
	t := &Table{w: w, limit: width}
	for _, c := range tableColumns {
		t.widths = append(t.widths, c.width)
	}
	if width > 0 {
		t.fit(width)
	}
	return t
}

// Sync has nothing to flush: every row is written whole.
func (t *Table) Sync() error { return nil }

// tableColumns are the columns before DIAGNOSIS, with their widths and
// how narrow a name column may get. POD shows the pod's UID when no
// source named it, and the memory cgroup's path outside pods.
var tableColumns = []struct {
	name     string
	width    int
	minWidth int // 0: fixed
}{
	{"TIME", 12, 0}, {"EVENT", 13, 0}, {"NAMESPACE", 16, 9}, {"POD", 32, 16}, {"CONTAINER", 16, 9},
	{"PID", 7, 0}, {"COMM", 15, 0}, {"MEMORY", 13, 0},
}

// minDiagnosis is the room a fitted row keeps for the diagnosis codes.
const minDiagnosis = 32

// fit narrows the name columns, POD first, until the row leaves
// minDiagnosis columns of width, or they are at their narrowest.
func (t *Table) fit(width int) {
	total := minDiagnosis
	for _, w := range t.widths {
		total += w + 1
	}
	for _, i := range []int{3, 2, 4} {
		if cut := min(total-width, t.widths[i]-tableColumns[i].minWidth); cut > 0 {
			t.widths[i] -= cut
			total -= cut
		}
	}
}

// Write writes e's row.
func (t *Table) Write(e *event.Event) error {
	var b strings.Builder
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.header {
		names := make([]string, len(tableColumns)+1)
		for i, c := range tableColumns {
			names[i] = c.name
		}
		names[len(tableColumns)] = "DIAGNOSIS"
		t.writeRow(&b, names)
		t.header = true
	}
	t.writeRow(&b, tableRow(e))
	_, err := io.WriteString(t.w, b.String())
	return err
}

// writeRow pads each cell to its column and shortens what is longer.
func (t *Table) writeRow(b *strings.Builder, cells []string) {
	var row strings.Builder
	for i, c := range cells {
		if i == len(t.widths) {
			row.WriteString(c)
			break
		}
		w := t.widths[i]
		c = Shorten(c, w)
		row.WriteString(c)
		row.WriteString(strings.Repeat(" ", w-utf8.RuneCountInString(c)+1))
	}
	line := row.String()
	if t.limit > 0 && utf8.RuneCountInString(line) > t.limit {
		// A wrapped row would break the columns: cut it at the edge.
		line = string([]rune(line)[:t.limit-1]) + "…"
	}
	b.WriteString(line)
	b.WriteString("\n")
}

func tableRow(e *event.Event) []string {
	ns, pod, container := "-", "-", "-"
	if k := e.K8s; k != nil && k.Pod != "" {
		ns, pod = k.Namespace, k.Pod
		if k.Container != "" {
			container = k.Container
		}
	} else if k != nil && k.PodUID != "" {
		pod = k.PodUID // no source named it
	} else if e.Memcg != nil && e.Memcg.Path != "" {
		pod = e.Memcg.Path
	} else if e.Victim != nil {
		pod = e.Victim.Cgroup
	} else if e.Trigger != nil {
		pod = e.Trigger.Cgroup
	} else if f := e.Folded; f != nil && f.Cgroup != "" {
		pod = f.Cgroup
	}
	pid, comm := "-", "-"
	if v := e.Victim; v != nil {
		pid, comm = fmt.Sprint(v.PID), name(v.Comm)
	} else if tr := e.Trigger; tr != nil {
		pid, comm = fmt.Sprint(tr.PID), name(tr.Comm)
	}
	mem := "-"
	switch {
	case e.Folded != nil && e.Alloc != nil:
		// The count where a task would be: a folded line names none.
		comm = fmt.Sprintf("×%d folded", e.Folded.Count)
		mem = fmt.Sprintf("order %d", e.Alloc.Order)
	case e.Alloc != nil:
		mem = fmt.Sprintf("order %d", e.Alloc.Order)
	case e.Memcg != nil && e.Memcg.LimitBytes > 0:
		mem = compactSize(e.Memcg.UsageBytes) + "/" + compactSize(e.Memcg.LimitBytes)
	case e.Constraint != "":
		mem = e.Constraint
	}
	codes := make([]string, len(e.Diagnosis))
	for i, f := range e.Diagnosis {
		codes[i] = f.Code
	}
	diag := strings.Join(codes, ",")
	if diag == "" {
		diag = "-"
	}
	return []string{
		e.Time.UTC().Format("15:04:05.000"), safetext.Escape(e.Event), name(ns), name(pod), name(container),
		pid, comm, mem, safetext.Escape(diag),
	}
}

// compactSize is FormatBytes without the space, so a column holds more.
func compactSize(b uint64) string {
	return strings.Replace(event.FormatBytes(b), " ", "", 1)
}

// name keeps names chosen by others from moving the cursor, breaking
// the row or passing for two cells: a name that is not one plain word is
// quoted, with escapes. "-" stands for none, or an empty one.
func name(s string) string {
	if s == "-" || s == "" {
		return "-"
	}
	return safetext.Quote(s)
}

// Shorten fits s in width runes, cutting its middle for an ellipsis.
func Shorten(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n <= width {
		return s
	}
	r := []rune(s)
	tail := (width - 1) / 2
	head := width - 1 - tail
	return string(r[:head]) + "…" + string(r[n-tail:])
}
