// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/event"
)

// stalledWriter blocks every write until released, as a stdout pipe does
// when its reader stops reading.
type stalledWriter struct {
	release chan struct{}
	got     []uint32
}

func (w *stalledWriter) Write(e *event.Event) error {
	<-w.release
	w.got = append(w.got, e.Victim.PID)
	return nil
}

func (w *stalledWriter) Sync() error { return nil }

// A stalled output never blocks the caller: what the queue holds is
// written once the output moves again, in order, and the rest is counted.
func TestOutputQueueStalledOutput(t *testing.T) {
	w := &stalledWriter{release: make(chan struct{})}
	q := startOutput(w, 4, nil, zap.NewNop())
	// Which events find room depends on when the writer takes the first
	// one off the queue, so the test records them.
	put := make(chan []uint32)
	go func() {
		var accepted []uint32
		for pid := uint32(1); pid <= 10; pid++ {
			if q.put(&event.Event{Event: event.KindOOMKill, Victim: &event.Victim{PID: pid}}) {
				accepted = append(accepted, pid)
			}
		}
		put <- accepted
	}()
	var accepted []uint32
	select {
	case accepted = <-put:
	case <-time.After(10 * time.Second):
		t.Fatal("put blocked on a stalled output")
	}
	// The writer may hold one event (blocked in Write) besides the 4
	// queued.
	if n := len(accepted); n < 4 || n > 5 || q.drops.Load() != uint64(10-n) {
		t.Fatalf("accepted %v, dropped %d of 10 with a queue of 4: want 4 or 5 accepted and the rest counted", accepted, q.drops.Load())
	}
	close(w.release)
	if n := q.close(10 * time.Second); n != 0 {
		t.Fatalf("close counted %d lines unwritten once the output moved again", n)
	}
	if written := q.writtenSoFar()[event.KindOOMKill]; written != uint64(len(accepted)) || !slices.Equal(w.got, accepted) {
		t.Fatalf("written %v (counted %d): want the accepted %v, in order", w.got, written, accepted)
	}
}

// An output that never moves again does not hold a stopping agent: close
// returns after its grace and counts what was not written as dropped.
func TestOutputQueueCloseBoundedWhenBlocked(t *testing.T) {
	w := &stalledWriter{release: make(chan struct{})}
	defer close(w.release)
	q := startOutput(w, 4, nil, zap.NewNop())
	for pid := uint32(1); pid <= 3; pid++ {
		if !q.put(&event.Event{Event: event.KindOOMKill, Victim: &event.Victim{PID: pid}}) {
			t.Fatalf("put %d refused with room in the queue", pid)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(q.ch) != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the first line")
		}
	}
	start := time.Now()
	n := q.close(100 * time.Millisecond)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("close took %v with the output blocked, want about its grace", took)
	}
	// One line blocked in Write, two still queued.
	if n != 3 || q.drops.Load() != 3 || len(q.writtenSoFar()) != 0 {
		t.Errorf("close counted %d unwritten, drops %d, written %v: want the 3 lines dropped and none written", n, q.drops.Load(), q.writtenSoFar())
	}
}
