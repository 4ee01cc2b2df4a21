// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"sync"
	"sync/atomic"
	"time"

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
	ch          chan pending
	done        chan struct{}
	drops       atomic.Uint64
	writeErrors atomic.Uint64 // read live by Running

	mu      sync.Mutex
	written map[string]uint64 // lines written, by event
}

// outputGrace bounds how long a stopping agent waits for the lines still
// queued when a write does not return (stdout's reader stopped reading):
// the agent exits in bounded time and counts those lines as dropped.
const outputGrace = 5 * time.Second

// pending is an event on its way, with its timing record (nil when not
// timed).
type pending struct {
	e *event.Event
	t *timing
}

// timedWriter is a Writer that can say when its line is encoded, so
// encoding and writing are timed apart.
type timedWriter interface {
	WriteTimed(e *event.Event, encoded func()) error
}

// startOutput writes what is put, in order; timings (nil: none) gets each
// written event's timing record.
func startOutput(out Writer, size int, timings *timingLog, log *zap.Logger) *outputQueue {
	q := &outputQueue{ch: make(chan pending, size), done: make(chan struct{}), written: map[string]uint64{}}
	tw, _ := out.(timedWriter)
	go func() {
		defer close(q.done)
		if err := lockPipelineThread(); err != nil {
			log.Debug("output thread keeps the default scheduler slice", zap.Error(err))
		}
		for p := range q.ch {
			var err error
			if t := p.t; t != nil {
				t.writeStart = time.Now()
				if tw != nil {
					err = tw.WriteTimed(p.e, func() { t.encoded = time.Now() })
				} else {
					err = out.Write(p.e)
					t.encoded = t.writeStart
				}
				t.written = time.Now()
			} else {
				err = out.Write(p.e)
			}
			if err != nil {
				q.writeErrors.Add(1)
				log.Error("write event", zap.Error(err))
				continue
			}
			q.count(p.e.Event)
			timings.write(p.e, p.t)
		}
	}()
	return q
}

// put queues e without waiting; false when the queue is full and e was
// dropped.
func (q *outputQueue) put(e *event.Event) bool { return q.putTimed(pending{e: e}) }

// putTimed is put for an event with its timing record.
func (q *outputQueue) putTimed(p pending) bool {
	select {
	case q.ch <- p:
		return true
	default:
		q.drops.Add(1)
		return false
	}
}

func (q *outputQueue) count(kind string) {
	q.mu.Lock()
	q.written[kind]++
	q.mu.Unlock()
}

// writtenSoFar returns the lines written so far, by event.
func (q *outputQueue) writtenSoFar() map[string]uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]uint64, len(q.written))
	for k, n := range q.written {
		out[k] = n
	}
	return out
}

// close writes out what is queued and returns once it is written, or,
// when a write has not returned after grace, counts the lines not written
// (those queued and the one being written) as dropped and returns their
// number.
func (q *outputQueue) close(grace time.Duration) (unwritten uint64) {
	close(q.ch)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-q.done:
		return 0
	case <-timer.C:
	}
	unwritten = 1 // the line whose write is blocked
	for range q.ch {
		unwritten++
	}
	q.drops.Add(unwritten)
	return unwritten
}
