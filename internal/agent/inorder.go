// SPDX-License-Identifier: Apache-2.0

package agent

// inOrder enriches events side by side when they come faster than one
// enrichment takes, and delivers them in the order they came: in a storm
// a slow read for one OOM (memory.stat paying the kernel's counter flush,
// a name lookup waiting for its timeout) delays its own line, not the
// enrichment of the events behind it, while lines still leave in kernel
// order, so the lines of one OOM never interleave with another's.
//
// A lone event, with nothing in flight and nothing waiting, is enriched
// on the caller's thread: no hand-off to another thread and back.
//
// Not safe for concurrent use: one goroutine (the enrichment loop) calls
// every method.
type inOrder struct {
	width   int           // at most this many enriched at once
	enrich  func(pending) // fills in the event; runs on any goroutine
	deliver func(pending) // hands it on; runs on the caller's
	fifo    []*inFlight   // oldest first
}

type inFlight struct {
	p    pending
	done chan struct{} // closed once p is enriched
}

// start enriches p. waiting is how many events are queued behind it.
// With width events in flight it first delivers the oldest, waiting for
// it if need be: what start keeps running is bounded.
func (o *inOrder) start(p pending, waiting int) {
	if len(o.fifo) == 0 && waiting == 0 {
		o.enrich(p)
		o.deliver(p)
		return
	}
	for o.full() {
		o.deliverHead()
	}
	f := &inFlight{p: p, done: make(chan struct{})}
	o.fifo = append(o.fifo, f)
	go func() {
		defer close(f.done)
		o.enrich(p)
	}()
}

// full says start would have to wait for the oldest event: the loop
// should take no new event until headDone.
func (o *inOrder) full() bool { return len(o.fifo) >= o.width }

// headDone is closed once the oldest event in flight is enriched; nil,
// which blocks for ever in a select, when none is in flight.
func (o *inOrder) headDone() <-chan struct{} {
	if len(o.fifo) == 0 {
		return nil
	}
	return o.fifo[0].done
}

// deliverReady delivers, oldest first, the events enriched so far that no
// older one still holds back.
func (o *inOrder) deliverReady() {
	for len(o.fifo) > 0 {
		select {
		case <-o.fifo[0].done:
			o.deliverHead()
		default:
			return
		}
	}
}

// drain waits for every event in flight and delivers them, oldest first.
func (o *inOrder) drain() {
	for len(o.fifo) > 0 {
		o.deliverHead()
	}
}

// deliverHead waits for the oldest event in flight and delivers it.
func (o *inOrder) deliverHead() {
	f := o.fifo[0]
	<-f.done
	o.fifo[0] = nil
	o.fifo = o.fifo[1:]
	o.deliver(f.p)
}
