// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/internal/event"
)

// Rows line up under the header whatever the names' lengths, long names
// are shortened with an ellipsis, and the diagnosis codes come last, whole.
func TestTableAligned(t *testing.T) {
	var buf bytes.Buffer
	tbl := NewTable(&buf)
	first := sampleEvent()
	first.Diagnosis = []event.Finding{{Code: "container_limit", Summary: "s"}, {Code: "non_init_victim", Summary: "s"}}
	long := sampleEvent()
	long.K8s.Pod = "a-very-long-deployment-name-for-the-checkout-service-7c9d8f6b5-x2x4q"
	long.K8s.Namespace = "team-payments-production-eu"
	for _, e := range []*event.Event{first, long, sampleAllocFailure(), sampleMemcgOOM(), sampleAllocFolded()} {
		if err := tbl.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want a header and 5 rows:\n%s", len(lines), buf.String())
	}
	t.Logf("\n%s", buf.String())
	header := lines[0]
	diagCol := strings.Index(header, "DIAGNOSIS")
	for _, l := range lines[1:] {
		// Every column starts where its header does.
		for _, c := range tableColumns[1:] {
			at := utf8.RuneCountInString(header[:strings.Index(header, c.name)])
			r := []rune(l)
			if r[at-1] != ' ' || r[at] == ' ' {
				t.Errorf("column %s not at rune %d in %q", c.name, at, l)
			}
		}
		if utf8.RuneCountInString(l) < diagCol {
			t.Errorf("row shorter than the header's DIAGNOSIS column: %q", l)
		}
	}
	if !strings.Contains(lines[2], "a-very-long-depl…7c9d8f6b5-x2x4q ") || !strings.Contains(lines[2], "team-pay…tion-eu ") {
		t.Errorf("long names not shortened in the middle: %q", lines[2])
	}
	if !strings.HasSuffix(lines[1], " "+first.Diagnosis[0].Code+","+first.Diagnosis[1].Code) {
		t.Errorf("row does not end with the diagnosis codes %v: %q", first.Diagnosis, lines[1])
	}
	if !strings.Contains(lines[3], "order 6") || !strings.Contains(lines[3], "runc:[2:INIT]") {
		t.Errorf("allocation failure row lacks its order or task: %q", lines[3])
	}
	if !strings.Contains(lines[5], "alloc_…folded") || !strings.Contains(lines[5], "×4981 folded") || !strings.Contains(lines[5], "order 9") {
		t.Errorf("folded row lacks its count or order: %q", lines[5])
	}
}

func TestShorten(t *testing.T) {
	for in, want := range map[string]string{"short": "short", "abcdefghij": "abcd…hij", "ääääääääää": "ääää…äää"} {
		if got := Shorten(in, 8); got != want {
			t.Errorf("Shorten(%q, 8) = %q, want %q", in, got, want)
		}
	}
}

// On a narrow terminal the name columns narrow, POD first, and no row is
// longer than the terminal: a wrapped row would break the columns.
func TestTableFitsWidth(t *testing.T) {
	for _, width := range []int{160, 120, 100, 60} {
		var buf bytes.Buffer
		tbl := NewTableWidth(&buf, width)
		e := sampleEvent()
		e.K8s.Pod = "a-very-long-deployment-name-for-the-checkout-service-7c9d8f6b5-x2x4q"
		e.K8s.Namespace = "team-payments"
		e.Diagnosis = []event.Finding{{Code: "container_limit"}, {Code: "non_init_victim"}}
		tbl.Write(e)
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: a row of %d runes: %q", width, n, l)
			}
		}
		t.Logf("width %d:\n%s", width, buf.String())
		if width >= 160 && !strings.HasSuffix(lines[1], "container_limit,non_init_victim") {
			t.Errorf("width %d: the diagnosis was cut: %q", width, lines[1])
		}
	}
}
