// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
)

type nopWriter struct{}

func (nopWriter) Write(*event.Event) error { return nil }
func (nopWriter) Sync() error              { return nil }

// The latency benchmark's record: one line per written event, its stages
// in order from the kernel's timestamp, each enrichment step that ran
// named, none that did not.
func TestTimingRecord(t *testing.T) {
	var ts bytes.Buffer
	q := startOutput(nopWriter{}, 4, &timingLog{w: &ts}, zap.NewNop())
	e := &event.Event{
		Event:      event.KindOOMKill,
		Time:       time.Now(),
		OOMID:      7,
		Victim:     &event.Victim{PID: 10, Cgroup: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Constraint: event.ConstraintMemcg,
		Memcg:      &event.Memcg{Path: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", LimitBytes: 1 << 30, UsageBytes: 1 << 30},
	}
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		t.Fatal(err)
	}
	tm := newTiming(uint64(boot.Nano()) - uint64(time.Millisecond))
	tm.decoded = time.Now()
	tm.enrichStart = time.Now()
	newEnricher(&cgroup.Hierarchy{Version: 2, Mount: t.TempDir()}, gfpBits{}, nil).enrichTimed(e, tm)
	tm.enriched = time.Now()
	q.putTimed(pending{e: e, t: tm})
	q.close(time.Second)

	var r TimingRecord
	if err := json.Unmarshal(ts.Bytes(), &r); err != nil {
		t.Fatalf("timing line %q: %v", ts.String(), err)
	}
	if r.Event != event.KindOOMKill || r.OOMID != 7 || r.PID != 10 || r.Memcg != e.Memcg.Path {
		t.Errorf("record %+v: want the event's kind, oom_id, victim and memcg", r)
	}
	if r.KernelToReadUS < 1000 || r.KernelToEnrichUS < r.KernelToReadUS || r.KernelToWrittenUS < r.KernelToEnrichUS+r.EnrichUS {
		t.Errorf("record %+v: want kernel → read ≥ 1 ms (the record was 1 ms old), then enrichment, then the line, in that order", r)
	}
	for _, s := range []string{"identity", "memcg_stat", "victim_stat", "tasks", "diagnose"} {
		if _, ok := r.StepsUS[s]; !ok {
			t.Errorf("steps %v lack %s, which ran", r.StepsUS, s)
		}
	}
	for _, s := range []string{"names", "buddy", "pod_stat"} {
		if _, ok := r.StepsUS[s]; ok {
			t.Errorf("steps %v have %s, which did not run", r.StepsUS, s)
		}
	}
}
