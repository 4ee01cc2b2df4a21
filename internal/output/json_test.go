// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
)

func sampleEvent() *event.Event {
	return &event.Event{
		Event: event.KindOOMKill,
		Time:  time.Date(2026, 11, 22, 9, 57, 56, 756996000, time.UTC),
		Node:  "node-1",
		Victim: &event.Victim{
			PID: 32308, TID: 32308, NSPID: 12, Comm: "stress", OOMScoreAdj: 939,
			Cgroup:        "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672",
			RSS:           event.RSS{AnonBytes: 102010880, FileBytes: 196608},
			TotalVMBytes:  113299456,
			PgtablesBytes: 253952,
		},
		Trigger:    &event.Trigger{PID: 32332, TID: 32332, NSPID: 36, Comm: "stress", Cgroup: "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672"},
		Constraint: event.ConstraintMemcg,
		Memcg:      &event.Memcg{Path: "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c", LimitBytes: 128974848, UsageBytes: 128974848, Failcnt: 3632},
		K8s:        &event.K8s{PodUID: "bc001ffa-68fc-11e9-92d7-5ef9efd9374c", ContainerID: "a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672", QOS: cgroup.QOSBurstable},
		OOMID:      7,
		GroupKill:  true,
		OOM:        &event.OOMContext{DomainBytes: 128974848, ChosenPoints: 1718, GFPMask: 0xcc0, GFP: "GFP_KERNEL", Order: 0},
		Stack:      []string{"oom_kill_process+0x219", "out_of_memory+0x1ba", "mem_cgroup_out_of_memory+0x49"},
	}
}

func sampleAllocFailure() *event.Event {
	return &event.Event{
		Event:   event.KindAllocFailure,
		Time:    time.Date(2026, 11, 22, 9, 0, 0, 1, time.UTC),
		Node:    "node-1",
		Trigger: &event.Trigger{PID: 812, TID: 812, NSPID: 812, Comm: "runc:[2:INIT]", Cgroup: "/kubepods/besteffort/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Alloc:   &event.Alloc{Order: 6, GFPMask: 0x400cc0, GFP: "GFP_KERNEL_ACCOUNT", MemcgCharge: true, Node: 0, Source: "warn_alloc"},
		Stack:   []string{"warn_alloc+0x0", "__alloc_pages_slowpath.constprop.0+0xd0b", "kmem_cache_create_usercopy+0x11e", "nf_conntrack_init_net+0x101"},
	}
}

func sampleMemcgOOM() *event.Event {
	found, handled, victims := false, false, uint32(0)
	return &event.Event{
		Event:       event.KindMemcgOOM,
		Time:        time.Date(2026, 11, 22, 9, 0, 0, 2, time.UTC),
		Node:        "node-1",
		OOMID:       9,
		Trigger:     &event.Trigger{PID: 90, TID: 90, NSPID: 1, Comm: "java", Cgroup: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Constraint:  event.ConstraintMemcg,
		Memcg:       &event.Memcg{Path: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", LimitBytes: 1 << 30, UsageBytes: 1 << 30},
		OOM:         &event.OOMContext{DomainBytes: 1 << 30, GFPMask: 0xcc0, GFP: "GFP_KERNEL"},
		VictimFound: &found,
		Victims:     &victims,
		Handled:     &handled,
		K8s:         &event.K8s{PodUID: "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", QOS: cgroup.QOSGuaranteed},
	}
}

// Every field of the event reaches the line, and the line is one valid
// object per the schema.
func TestJSONLinesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewJSONLines(&buf)
	want := sampleEvent()
	global := sampleEvent()
	global.Constraint, global.Memcg, global.K8s, global.GroupKill = event.ConstraintGlobal, nil, nil, false
	all := []*event.Event{want, global, sampleAllocFailure(), sampleMemcgOOM()}
	for _, e := range all {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != len(all) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(all), buf.String())
	}
	schema := eventtest.Schema(t)
	for i, e := range all {
		got := eventtest.Validate(t, schema, lines[i])
		if !reflect.DeepEqual(got, e) {
			t.Errorf("line %d round trip:\n got  %+v\n want %+v\n%s", i, got, e, lines[i])
		}
	}
	if !bytes.Contains(lines[0], []byte(`"time":"2026-11-22T09:57:56.756996000Z"`)) {
		t.Errorf("time is not RFC 3339 UTC with nanoseconds: %s", lines[0])
	}
}

// Names are chosen by whoever starts the process or makes the cgroup:
// quotes, newlines and invalid UTF-8 must not break the line.
func TestJSONLinesHostileNames(t *testing.T) {
	var buf bytes.Buffer
	e := sampleEvent()
	e.Victim.Comm = "a\"b\n{\"event\":\xff"
	e.Victim.Cgroup = "/evil\n\"}/x"
	if err := NewJSONLines(&buf).Write(e); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("one event became %d lines:\n%s", n, buf.String())
	}
	got := eventtest.Validate(t, eventtest.Schema(t), bytes.TrimSpace(buf.Bytes()))
	if got.Victim.Cgroup != e.Victim.Cgroup {
		t.Errorf("cgroup %q, want %q", got.Victim.Cgroup, e.Victim.Cgroup)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// A line that was not written is an error for the caller to count, not a
// success: stdout on a full disk, a closed pipe.
func TestJSONLinesWriteErrors(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("skipped: no /dev/full: %v", err)
	}
	defer full.Close()
	for name, w := range map[string]io.Writer{"/dev/full": full, "closed pipe": failingWriter{syscall.EPIPE}} {
		err := NewJSONLines(w).Write(sampleEvent())
		if err == nil || !strings.Contains(err.Error(), "write oom_kill event") {
			t.Errorf("%s: Write = %v, want the write's error", name, err)
		}
	}
}

func sampleAllocFolded() *event.Event {
	at := time.Date(2026, 11, 22, 9, 0, 1, 0, time.UTC)
	return &event.Event{
		Event:  event.KindAllocFailuresFolded,
		Time:   at,
		Node:   "node-1",
		Alloc:  &event.Alloc{Order: 9, GFPMask: 0x346cca, GFP: "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL", NoWarn: true, Node: -1, Source: "warn_alloc", CgroupID: 4242},
		Folded: &event.Folded{Count: 4981, Records: 1, Cgroup: "/kubepods/besteffort/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", Since: at.Add(-time.Second), Last: at.Add(-time.Millisecond)},
		K8s:    &event.K8s{PodUID: "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", QOS: "BestEffort"},
	}
}
