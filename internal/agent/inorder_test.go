// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
)

func pendingPID(pid uint32) pending {
	return pending{e: &event.Event{Event: event.KindOOMKill, Victim: &event.Victim{PID: pid}}}
}

// Events enriched side by side, finishing in the reverse order, are still
// delivered in the order they came; no more than width run at once.
func TestInOrderDeliversInArrivalOrder(t *testing.T) {
	const n, width = 12, 4
	release := map[uint32]chan struct{}{}
	for pid := uint32(1); pid <= n; pid++ {
		release[pid] = make(chan struct{})
	}
	var running, most atomic.Int32
	var delivered []uint32
	o := &inOrder{
		width: width,
		enrich: func(p pending) {
			now := running.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			<-release[p.e.Victim.PID]
			running.Add(-1)
		},
		deliver: func(p pending) { delivered = append(delivered, p.e.Victim.PID) },
	}
	// Release the events last first, each once it has started, from
	// another goroutine: the loop below blocks in start while width are
	// in flight.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for pid := uint32(n); pid >= 1; pid-- {
			time.Sleep(time.Millisecond)
			close(release[pid])
		}
	}()
	for pid := uint32(1); pid <= n; pid++ {
		o.start(pendingPID(pid), n-int(pid)+1) // as if the rest were queued
		o.deliverReady()
	}
	o.drain()
	wg.Wait()
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i + 1)
	}
	if !slices.Equal(delivered, want) {
		t.Errorf("delivered %v, want %v", delivered, want)
	}
	if m := most.Load(); m > width {
		t.Errorf("%d enriched at once, want at most %d", m, width)
	}
}

// A lone event is enriched and delivered before start returns, on the
// caller's goroutine; with others queued behind it, it is not.
func TestInOrderLoneEventInline(t *testing.T) {
	var delivered []uint32
	block := make(chan struct{})
	o := &inOrder{
		width: 2,
		enrich: func(p pending) {
			if p.e.Victim.PID == 2 {
				<-block
			}
		},
		deliver: func(p pending) { delivered = append(delivered, p.e.Victim.PID) },
	}
	o.start(pendingPID(1), 0)
	if !slices.Equal(delivered, []uint32{1}) || o.headDone() != nil {
		t.Fatalf("lone event: delivered %v, in flight %d: want it delivered at once", delivered, len(o.fifo))
	}
	o.start(pendingPID(2), 1)
	if len(delivered) != 1 || o.headDone() == nil {
		t.Fatalf("event with one queued behind: delivered %v, in flight %d: want it in flight", delivered, len(o.fifo))
	}
	// Nothing in flight may be passed: 3 waits behind 2 even though
	// nothing is queued behind it.
	o.start(pendingPID(3), 0)
	o.deliverReady()
	if len(delivered) != 1 {
		t.Fatalf("delivered %v while 2 is still being enriched", delivered)
	}
	close(block)
	<-o.headDone()
	o.drain()
	if !slices.Equal(delivered, []uint32{1, 2, 3}) {
		t.Errorf("delivered %v, want [1 2 3]", delivered)
	}
}
