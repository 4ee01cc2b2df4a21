// SPDX-License-Identifier: Apache-2.0

// Package agent wires the path an event takes: kernel probes, ring buffer,
// decoding, pod identity, output. It runs until its context ends, then
// detaches every probe and writes out what was already captured.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// Config is the agent's settings, filled once from flags.
type Config struct {
	Node        string
	ReadyFile   string // written once every probe is attached
	RingBufSize uint32
	// QueueSize bounds the events decoded but not yet enriched, and
	// again those enriched but not yet written; past it events are
	// counted as dropped rather than held without bound.
	QueueSize int
	// StatsInterval is how often lost-event counters are checked and any
	// new loss logged.
	StatsInterval time.Duration
	// Tier forces an attach tier (probe.TierNone: the best per hook).
	Tier probe.Tier
	// AllocFailures, AllocMinOrder, AllocNoWarn: see probe.Config.
	AllocFailures bool
	AllocMinOrder uint32
	// KernelFilter: see probe.Config.Filter (a trace session's own probes).
	KernelFilter probe.Filter
	AllocNoWarn  bool
	// AllocLimits: see probe.Config. Failures past them are folded and
	// reported every AllocFoldInterval (default 1 s), at most
	// AllocFoldLines lines each time (0: DefaultAllocFoldLines).
	AllocLimits       probe.AllocLimits
	AllocFoldInterval time.Duration
	AllocFoldLines    int
	// OOMScoreAdj is what the agent lowers its own oom_score_adj to at
	// start (0: leave it); see DefaultOOMScoreAdj.
	OOMScoreAdj int
	// OnReady, if set, is called once every probe is attached (as
	// ReadyFile is written): the health listener's /readyz turns 200.
	OnReady func()
	// Names names pods and containers (nil: events carry IDs only).
	Names Namer
	// Sinks see every event once it is enriched.
	Sinks []Sink
	// OnRunning, if set, is called once every probe is attached, with a
	// live view of the loss counters and the BPF programs (metrics read
	// it when scraped).
	OnRunning func(*Running)
	// Timings, if set, gets one JSON line per written event: how long
	// each stage between the kernel's timestamp and the written line took
	// (the latency benchmark's breakdown; not part of the event contract).
	Timings io.Writer
}

// Sink is handed every event once it is enriched, as its line is queued
// for writing: metrics, Kubernetes Events. Observe must return at once (a
// sink that does slow work queues with a bound and counts what it drops):
// the next event must not wait. The line is encoded from the same event
// meanwhile, so a sink must not change it.
type Sink interface {
	Observe(*event.Event)
}

// Writer is where events go.
type Writer interface {
	Write(*event.Event) error
	Sync() error
}

// Stats counts what the agent did; it is logged when the agent stops.
type Stats struct {
	Events     map[string]uint64 `json:"events"`
	QueueDrops uint64            `json:"queue_drops"`
	// OutputDrops: events enriched but not written because the output
	// was stalled for longer than its queue could hold.
	OutputDrops  uint64 `json:"output_drops"`
	DecodeErrors uint64 `json:"decode_errors"`
	WriteErrors  uint64 `json:"write_errors"`
	// RepeatMarks: a second mark of an already reported process in the
	// same OOM (another of its threads, marked when a group kill reaches
	// the victim again); not written.
	RepeatMarks uint64         `json:"repeat_marks"`
	Kernel      probe.Counters `json:"kernel"`
}

// Run traces until ctx is done.
func Run(ctx context.Context, cfg Config, out Writer, log *zap.Logger) (Stats, error) {
	stats := Stats{Events: map[string]uint64{}}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = 10 * time.Second
	}
	if cfg.AllocFoldInterval <= 0 {
		cfg.AllocFoldInterval = time.Second
	}
	if cfg.AllocFoldLines <= 0 {
		cfg.AllocFoldLines = DefaultAllocFoldLines
	}

	protectFromOOMKiller(ownOOMScoreAdj, cfg.OOMScoreAdj, log)

	seeds := map[uint64]uint64{}
	var hierp *cgroup.Hierarchy
	hier, err := cgroup.FindMemoryHierarchy()
	if err != nil {
		log.Warn("memory cgroups not found: every OOM will be reported as global", zap.Error(err))
	} else {
		hierp = &hier
		log.Info("memory cgroup hierarchy", zap.Int("version", hier.Version), zap.String("mount", hier.Mount), zap.String("mode", hier.Mode), zap.String("root", hier.Root))
		if !hier.Whole() {
			log.Warn("the memory cgroup mount shows one cgroup, not the whole hierarchy: memcg usage and memory.stat will be missing; in a container, mount the host's /sys/fs/cgroup at /sys/fs/cgroup", zap.String("root", hier.Root))
		}
		if seeds, err = hier.OOMKillCounts(); err != nil {
			return stats, err
		}
	}

	probes, err := probe.Load(probe.Config{
		RingBufSize: cfg.RingBufSize, OOMKillsSeen: seeds, Tier: cfg.Tier,
		AllocFailures: cfg.AllocFailures, AllocMinOrder: cfg.AllocMinOrder, AllocNoWarn: cfg.AllocNoWarn,
		AllocLimits: cfg.AllocLimits, Filter: cfg.KernelFilter,
	})
	if err != nil {
		return stats, err
	}
	defer probes.Close()
	// Loading parsed the kernel's BTF and symbol table: the heap grew to
	// several times what the agent keeps. Hand that back now rather than
	// when the runtime's scavenger gets to it, minutes later.
	debug.FreeOSMemory()
	logChoices(probes.Choices, log)
	if cfg.ReadyFile != "" {
		if err := os.WriteFile(cfg.ReadyFile, []byte("ready\n"), 0o644); err != nil {
			return stats, fmt.Errorf("write --ready-file: %w", err)
		}
		defer os.Remove(cfg.ReadyFile)
	}
	if cfg.OnReady != nil {
		cfg.OnReady()
	}

	enr := newEnricher(hierp, gfpBits{
		dma: probes.GFP.Bit("__GFP_DMA"), movable: probes.GFP.Bit("__GFP_MOVABLE"), directReclaim: probes.GFP.Bit("__GFP_DIRECT_RECLAIM"),
	}, cfg.Names)
	dec := &probe.Decoder{PageSize: uint64(os.Getpagesize()), Node: cfg.Node, BootToWall: bootToWall, GFP: probes.GFP}
	if probes.Symbols != nil {
		dec.Symbols = probes.Symbols
	} else {
		log.Warn("kernel stack frames will be addresses, not names: /proc/kallsyms is unreadable or hides its addresses (CAP_SYSLOG)")
	}
	queue := make(chan pending, cfg.QueueSize)
	var queueDrops, decodeErrors atomic.Uint64
	var timings *timingLog
	if cfg.Timings != nil {
		timings = &timingLog{w: cfg.Timings}
	}

	var wg sync.WaitGroup
	wg.Add(1)
	readErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		defer close(queue)
		readErr <- readLoop(probes, dec, queue, timings != nil, &queueDrops, &decodeErrors, log)
	}()

	defer detachWhenDone(ctx, probes, log)()

	lines := startOutput(out, cfg.QueueSize, timings, log)
	if cfg.OnRunning != nil {
		run := &Running{probes: probes, queueDrops: &queueDrops, decodeErrors: &decodeErrors, lines: lines}
		// Deferred after probes.Close: runs before it.
		defer run.stop()
		cfg.OnRunning(run)
	}
	seen := newVictimSet(4096)
	folder := probe.NewFolder(dec, probes.AllocSource(), cfg.AllocFoldLines)
	// deliver hands an enriched event on, in the order the events came.
	deliver := func(p pending) {
		// Sinks count the event even when its line cannot be
		// written: the kill happened either way.
		p.t.timeStep(stepSinks, func() {
			for _, s := range cfg.Sinks {
				s.Observe(p.e)
			}
		})
		if p.t != nil {
			p.t.enriched = time.Now()
		}
		lines.putTimed(p)
	}
	order := &inOrder{width: enrichWidth, enrich: func(p pending) { enr.enrichTimed(p.e, p.t) }, deliver: deliver}
	handle := func(p pending) {
		e := p.e
		if e.Victim != nil && e.OOMID != 0 && !seen.add(e.OOMID, e.Victim.PID) {
			stats.RepeatMarks++
			return
		}
		if p.t != nil {
			p.t.enrichStart = time.Now()
		}
		folder.Learn(e)
		order.start(p, len(queue))
	}
	// fold reports what the kernel folded; the last one (at exit) reads
	// every tally whatever the total says.
	fold := func(last bool) {
		total, err := probes.AllocFolded()
		if err == nil && !last && folder.Idle(total) {
			return
		}
		tallies, err := probes.Tallies()
		if err != nil {
			log.Warn("read allocation failure tallies", zap.Error(err))
		}
		for _, e := range folder.Fold(tallies, total, time.Now()) {
			handle(pending{e: e})
		}
	}
	// Enrichment is led from a thread of its own (lockPipelineThread):
	// events are taken in the order the kernel recorded them, enriched
	// side by side when they come faster than one enrichment takes
	// (inOrder), and their lines written in that same order, so the kill
	// lines of one OOM, and the OOMs, never interleave.
	enriched := make(chan struct{})
	go func() {
		defer close(enriched)
		if err := lockPipelineThread(); err != nil {
			log.Debug("enrichment thread keeps the default scheduler slice", zap.Error(err))
		}
		ticker := time.NewTicker(cfg.StatsInterval)
		defer ticker.Stop()
		foldTicker := time.NewTicker(cfg.AllocFoldInterval)
		defer foldTicker.Stop()
		var lastLoss uint64
		for done := false; !done; {
			in := queue
			if order.full() {
				in = nil // until the oldest event in flight is delivered
			}
			select {
			case p, ok := <-in:
				if !ok {
					done = true
					break
				}
				handle(p)
			case <-order.headDone():
				order.deliverReady()
			case <-foldTicker.C:
				fold(false)
			case <-ticker.C:
				if c, err := probes.Counters(); err == nil {
					if loss := c.Lost() + queueDrops.Load() + lines.drops.Load(); loss > lastLoss {
						log.Warn("events lost", zap.Uint64("ringbuf_full", c.RingBufFull), zap.Any("ringbuf_full_by_event", c.RingBufFullByEvent), zap.Uint64("queue_full", queueDrops.Load()), zap.Uint64("output_stalled", lines.drops.Load()))
						lastLoss = loss
					}
				}
			}
		}
		order.drain()
		// The probes are detached and every record is read: what is still
		// folded is reported now, the last counts complete.
		folder.SetMaxLines(0)
		fold(true)
		order.drain()
	}()
	<-enriched
	wg.Wait()
	if n := lines.close(outputGrace); n > 0 {
		log.Warn("stdout blocked: stopping without the lines it did not take", zap.Uint64("dropped", n), zap.Duration("waited", outputGrace))
	} else if err := out.Sync(); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		log.Warn("flush output", zap.Error(err))
	}
	stats.Events, stats.WriteErrors, stats.OutputDrops = lines.writtenSoFar(), lines.writeErrors.Load(), lines.drops.Load()

	stats.QueueDrops = queueDrops.Load()
	stats.DecodeErrors = decodeErrors.Load()
	if c, err := probes.Counters(); err == nil {
		stats.Kernel = c
	}
	if err := <-readErr; err != nil {
		return stats, err
	}
	return stats, nil
}

// enrichWidth bounds the events enriched at once. Each reads a few cgroup
// and /proc files (its own reads side by side too); a few at once let a
// storm's lines pass a slow one without the agent taking more of a small
// node's CPUs than the storm leaves it.
const enrichWidth = 4

// DefaultAllocFoldLines bounds the alloc_failures_folded lines written
// per interval; keys beyond it are reported in the next.
const DefaultAllocFoldLines = 100

// readLoop moves records from the ring buffer to the queue until the
// probes are detached and the ring buffer is empty. It never blocks on a
// full queue: the kernel side must keep moving.
func readLoop(p *probe.Probes, dec *probe.Decoder, queue chan<- pending, timed bool, drops, decodeErrors *atomic.Uint64, log *zap.Logger) error {
	if err := lockPipelineThread(); err != nil {
		log.Debug("ring buffer reader keeps the default scheduler slice", zap.Error(err))
	}
	var rec ringbuf.Record
	for {
		if err := p.ReadInto(&rec); err != nil {
			if errors.Is(err, probe.ErrDrained) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		var t *timing
		if timed {
			t = newTiming(probe.RecordBootNS(rec.RawSample))
		}
		e, err := dec.Decode(rec.RawSample)
		if err != nil {
			decodeErrors.Add(1)
			log.Error("decode record", zap.Error(err))
			continue
		}
		if t != nil {
			t.decoded = time.Now()
		}
		select {
		case queue <- pending{e: e, t: t}:
		default:
			drops.Add(1)
		}
	}
}

// bootToWall converts a CLOCK_BOOTTIME reading to wall-clock time, using
// both clocks now, so suspend and clock steps are accounted for.
func bootToWall(bootNS uint64) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano() - int64(bootNS)))
}

// victimSet remembers the last n (oom_id, pid) pairs reported.
type victimSet struct {
	seen  map[[2]uint64]bool
	order [][2]uint64
	next  int
}

func newVictimSet(n int) *victimSet {
	return &victimSet{seen: make(map[[2]uint64]bool, n), order: make([][2]uint64, n)}
}

// add reports whether the pair is new, and remembers it.
func (v *victimSet) add(oomID uint64, pid uint32) bool {
	k := [2]uint64{oomID, uint64(pid)}
	if v.seen[k] {
		return false
	}
	delete(v.seen, v.order[v.next])
	v.order[v.next] = k
	v.next = (v.next + 1) % len(v.order)
	v.seen[k] = true
	return true
}
