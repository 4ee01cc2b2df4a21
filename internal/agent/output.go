// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/event"
)

// outputQueue hands enriched events to the one goroutine that writes
// them. A reader of stdout that stops reading (a container runtime that
// is restarting holds the pipe; a full pipe blocks the write) then stalls
// the lines only: memory.stat is still read the moment an event arrives.
// Past the bound, events are dropped and counted, never held without
// limit.
type outputQueue struct {
	ch          chan *event.Event
	done        chan struct{}
	drops       atomic.Uint64
	writeErrors atomic.Uint64 // read live by Running

	// Written by the writing goroutine, read once it is done.
	written map[string]uint64
}

func startOutput(out Writer, size int, log *zap.Logger) *outputQueue {
	q := &outputQueue{ch: make(chan *event.Event, size), done: make(chan struct{}), written: map[string]uint64{}}
	go func() {
		defer close(q.done)
		for e := range q.ch {
			if err := out.Write(e); err != nil {
				q.writeErrors.Add(1)
				log.Error("write event", zap.Error(err))
				continue
			}
			q.written[e.Event]++
		}
	}()
	return q
}

// put queues e without waiting; false when the queue is full and e was
// dropped.
func (q *outputQueue) put(e *event.Event) bool {
	select {
	case q.ch <- e:
		return true
	default:
		q.drops.Add(1)
		return false
	}
}

// close writes out what is queued and returns once it is written.
func (q *outputQueue) close() {
	close(q.ch)
	<-q.done
}
