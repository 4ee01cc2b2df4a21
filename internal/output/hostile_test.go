// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// hostileEvent is sampleEvent with every name chosen by others set to s.
func hostileEvent(s string) *event.Event {
	e := sampleEvent()
	e.Victim.Comm, e.Victim.Cgroup = s, "/"+s
	e.Trigger.Comm, e.Trigger.Cgroup = s, "/"+s
	e.Memcg.Path, e.Memcg.StatError = "/"+s, "open /"+s+"/memory.stat: no such file"
	e.K8s.Namespace, e.K8s.Pod, e.K8s.Container = s, s, s
	e.K8s.Workload = &event.Workload{Kind: "Deployment", Name: s}
	e.K8s.LookupError = "api: pod " + s
	e.Diagnosis = []event.Finding{{Code: "container_limit", Summary: "the limit of " + s + " fired"}}
	e.Tasks = []event.Task{{PID: 1, Comm: s}, {PID: 2, Comm: "ok"}}
	e.TmpfsMounts = []string{"/" + s}
	return e
}

// A name chosen to break the views neither reaches the terminal raw nor
// adds a line or a table cell, and the name is shown quoted with
// escapes, so it reads back exactly.
func TestHostileNamesTableAndPretty(t *testing.T) {
	var plainTable, plainCard bytes.Buffer
	if err := NewTable(&plainTable).Write(hostileEvent("plain")); err != nil {
		t.Fatal(err)
	}
	if err := NewPretty(&plainCard).Write(hostileEvent("plain")); err != nil {
		t.Fatal(err)
	}
	for _, s := range safetexttest.Names {
		var table, card bytes.Buffer
		if err := NewTable(&table).Write(hostileEvent(s)); err != nil {
			t.Fatal(err)
		}
		if err := NewPretty(&card).Write(hostileEvent(s)); err != nil {
			t.Fatal(err)
		}
		for view, out := range map[string]*bytes.Buffer{"table": &table, "pretty": &card} {
			if u := safetexttest.Unsafe(out.String(), true); u != "" {
				t.Errorf("name %q: %s view: %s:\n%s", s, view, u, out)
			}
		}
		if got, want := strings.Count(card.String(), "\n"), strings.Count(plainCard.String(), "\n"); got != want {
			t.Errorf("name %q: the card has %d lines, a plain name's %d:\n%s", s, got, want, card.String())
		}
		if !strings.Contains(card.String(), "victim   "+safetext.Quote(s)+" (pid") {
			t.Errorf("name %q: the card does not show it as %s:\n%s", s, safetext.Quote(s), card.String())
		}
		rows := strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")
		plainRows := strings.Split(strings.TrimSuffix(plainTable.String(), "\n"), "\n")
		if len(rows) != 2 {
			t.Errorf("name %q: %d table lines, want the header and one row:\n%s", s, len(rows), table.String())
			continue
		}
		// The cells after the names stay where a plain name leaves them.
		at := func(row string) int { return utf8.RuneCountInString(row[:strings.Index(row, " 32308 ")]) }
		if at(rows[1]) != at(plainRows[1]) || !strings.HasSuffix(rows[1], " 123MiB/123MiB container_limit") {
			t.Errorf("name %q: the row's columns moved:\n%s\n%s", s, plainRows[1], rows[1])
		}
	}
}
