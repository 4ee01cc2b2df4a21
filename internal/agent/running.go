// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/internal/probe"
)

// ErrStopped: the agent has closed its probes; a Running view has nothing
// more to read.
var ErrStopped = errors.New("agent stopped")

// Running is a live view of a running agent's loss counters and of its
// BPF programs, for metrics read when they are scraped. Run hands it to
// Config.OnRunning once every probe is attached; from the moment Run
// starts closing the probes it answers ErrStopped. Safe for concurrent use.
type Running struct {
	mu     sync.RWMutex
	probes *probe.Probes // nil once stopped

	queueDrops, decodeErrors *atomic.Uint64
	lines                    *outputQueue
}

// UserSpaceLoss counts what user space could not pass on.
type UserSpaceLoss struct {
	// QueueDrops: decoded, dropped before enrichment (queue full).
	QueueDrops uint64
	// OutputDrops: enriched, dropped before its line (output stalled).
	// Sinks saw these events.
	OutputDrops uint64
	// DecodeErrors: ring buffer records that could not be decoded.
	DecodeErrors uint64
	// WriteErrors: lines whose write failed. Sinks saw these events.
	WriteErrors uint64
}

// ProgramStat is one BPF program's run statistics as the kernel keeps them
// while kernel.bpf_stats_enabled is 1 (they stay put while it is 0).
type ProgramStat struct {
	Name     string
	RunCount uint64
	Runtime  time.Duration
}

// Kernel is what the kernel side lost or left out (probe.Counters).
func (r *Running) Kernel() (probe.Counters, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.probes == nil {
		return probe.Counters{}, ErrStopped
	}
	return r.probes.Counters()
}

// UserSpace is what user space lost so far.
func (r *Running) UserSpace() UserSpaceLoss {
	return UserSpaceLoss{
		QueueDrops:   r.queueDrops.Load(),
		OutputDrops:  r.lines.drops.Load(),
		DecodeErrors: r.decodeErrors.Load(),
		WriteErrors:  r.lines.writeErrors.Load(),
	}
}

// Programs returns the run statistics of every loaded program, by name.
// A program whose statistics cannot be read is left out; the error says
// why.
func (r *Running) Programs() ([]ProgramStat, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.probes == nil {
		return nil, ErrStopped
	}
	var out []ProgramStat
	var errs []error
	for name, p := range r.probes.Programs() {
		st, err := p.Stats()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ProgramStat{Name: name, RunCount: st.RunCount, Runtime: st.Runtime})
	}
	slices.SortFunc(out, func(a, b ProgramStat) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// stop makes the view answer ErrStopped; it returns once no reader holds
// the probes, so they can be closed.
func (r *Running) stop() {
	r.mu.Lock()
	r.probes = nil
	r.mu.Unlock()
}
