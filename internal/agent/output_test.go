// SPDX-License-Identifier: Apache-2.0

package agent

import (
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
	q := startOutput(w, 4, zap.NewNop())
	put := make(chan int)
	go func() {
		accepted := 0
		for pid := uint32(1); pid <= 10; pid++ {
			if q.put(&event.Event{Event: event.KindOOMKill, Victim: &event.Victim{PID: pid}}) {
				accepted++
			}
		}
		put <- accepted
	}()
	var accepted int
	select {
	case accepted = <-put:
	case <-time.After(10 * time.Second):
		t.Fatal("put blocked on a stalled output")
	}
	// The writer may hold one event (blocked in Write) besides the 4
	// queued.
	if accepted < 4 || accepted > 5 || q.drops.Load() != uint64(10-accepted) {
		t.Fatalf("accepted %d, dropped %d of 10 with a queue of 4: want 4 or 5 accepted and the rest counted", accepted, q.drops.Load())
	}
	close(w.release)
	q.close()
	if len(w.got) != accepted || q.written[event.KindOOMKill] != uint64(accepted) {
		t.Fatalf("written %v (counted %d): want the %d accepted", w.got, q.written[event.KindOOMKill], accepted)
	}
	for i, pid := range w.got {
		if pid != uint32(i+1) {
			t.Fatalf("written %v: want the accepted events in order", w.got)
		}
	}
}
