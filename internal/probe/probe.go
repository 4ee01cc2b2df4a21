// SPDX-License-Identifier: Apache-2.0

// Package probe loads oomtrace's BPF programs, picks per hook the best
// tier the running kernel allows (fentry, kprobe, tracepoint), attaches
// them, reads their records from the ring buffer, and decodes them into
// events (decode.go).
package probe

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/gfp"
	"github.com/oomtrace/oomtrace/internal/ksym"
)

// DefaultRingBufSize holds about 340 OOM records (3 KiB each): more than
// the kernel kills in seconds, since kills are serialized, while the
// reader takes each as it comes. Each MiB counts twice in the agent's RSS
// (the kernel maps the data pages twice, for records that wrap), so 4 MiB
// made 8 MiB of a 37 MiB idle RSS; a storm of 500 kills loses none with
// a single page (docs/benchmarks.md, 41-storm). Losses are counted per
// event kind either way.
const DefaultRingBufSize = 1 << 20

// Config is what the probes need before load.
type Config struct {
	// RingBufSize in bytes: a power of two and a multiple of the page size.
	RingBufSize uint32
	// OOMKillsSeen seeds the per-memcg OOM kill counters (kernfs id to
	// count) of cgroups that had kills before the agent started, so the
	// first victim marked in them is told apart correctly.
	OOMKillsSeen map[uint64]uint64
	// Tier forces one tier on every hook that has it (TierNone: the best).
	Tier Tier
	// AllocFailures enables the page allocation failure hook.
	AllocFailures bool
	// AllocMinOrder: failures of lower orders are counted, not reported.
	AllocMinOrder uint32
	// AllocNoWarn reports __GFP_NOWARN failures too, instead of counting them.
	AllocNoWarn bool
	// AllocLimits bound the alloc_failure records written; the rest are
	// folded (zero: DefaultAllocLimits).
	AllocLimits AllocLimits
	// Filter drops, in the kernel, records that cannot match it (zero:
	// none, at no cost).
	Filter Filter
}

// Filter is what the BPF side can tell before it writes a record. It is
// a superset of the exact match, which stays with the reader: a record
// passes when every field set matches.
type Filter struct {
	// PID: the host pid (tgid) of the victim or the trigger.
	PID uint32
	// CgroupID: the kernfs id (the directory's inode on the memory
	// hierarchy) of a memory cgroup; the victim's, the trigger's or the
	// OOM's memcg must be it or below it.
	CgroupID uint64
}

// Probes are the loaded and attached BPF programs and their ring buffer.
type Probes struct {
	coll    *ebpf.Collection
	links   []link.Link
	reader  *ringbuf.Reader
	counter *ebpf.Map
	tallies *ebpf.Map
	lost    *ebpf.Map // ring buffer losses by record kind
	// Choices says, per hook, which tier is attached and why.
	Choices []Choice
	// Symbols names kernel stack frames; nil when /proc/kallsyms is hidden.
	Symbols *ksym.Table
	// GFP names this kernel's allocation flags.
	GFP *gfp.Flags
}

// Load picks a tier per hook, loads the BPF programs into the kernel and
// attaches them. On error nothing stays loaded or attached.
func Load(cfg Config) (_ *Probes, err error) {
	if cfg.RingBufSize == 0 {
		cfg.RingBufSize = DefaultRingBufSize
	}
	if err := ValidateRingBufSize(cfg.RingBufSize); err != nil {
		return nil, err
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if err := requireKernelBTF(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps: %w", explainPerm(err))
	}

	e := probeKernel()
	choices, err := choose(e.kernel, cfg.Tier)
	if err != nil {
		return nil, err
	}
	if !cfg.AllocFailures {
		turnOff(choices, "page_alloc_failure", "--alloc-failures=false")
	}
	p := &Probes{Choices: choices, Symbols: e.syms, GFP: gfp.FromBTF(e.btf)}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	want := map[string]bool{}
	for _, c := range choices {
		if c.form == nil {
			continue
		}
		for _, pr := range c.form.progs {
			want[pr.name] = true
		}
	}

	spec, err := bpf.LoadOomtrace()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	spec.Maps[bpf.OomtraceMapEvents].MaxEntries = cfg.RingBufSize
	for name, v := range map[string]uint32{
		bpf.OomtraceVarAllocMinOrder:     cfg.AllocMinOrder,
		bpf.OomtraceVarAllocReportNowarn: boolU32(cfg.AllocNoWarn),
		bpf.OomtraceVarGfpNowarn:         p.GFP.Bit("__GFP_NOWARN"),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if cfg.AllocLimits == (AllocLimits{}) {
		cfg.AllocLimits = DefaultAllocLimits
	}
	if err := cfg.AllocLimits.Validate(); err != nil {
		return nil, err
	}
	if err := spec.Variables[bpf.OomtraceVarAllocRecordLimits].Set(cfg.AllocLimits.spec()); err != nil {
		return nil, fmt.Errorf("set %s: %w", bpf.OomtraceVarAllocRecordLimits, err)
	}
	if err := spec.Variables[bpf.OomtraceVarFilterPid].Set(cfg.Filter.PID); err != nil {
		return nil, fmt.Errorf("set %s: %w", bpf.OomtraceVarFilterPid, err)
	}
	if err := spec.Variables[bpf.OomtraceVarFilterCgroupId].Set(cfg.Filter.CgroupID); err != nil {
		return nil, fmt.Errorf("set %s: %w", bpf.OomtraceVarFilterCgroupId, err)
	}
	// Only the chosen tier's programs are loaded: the others would not
	// pass the verifier, or attach, on every kernel.
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	p.coll, err = ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load BPF programs: %w", explainLoad(err))
	}
	p.counter = p.coll.Maps[bpf.OomtraceMapCounters]
	p.tallies = p.coll.Maps[bpf.OomtraceMapAllocTallies]
	p.lost = p.coll.Maps[bpf.OomtraceMapRingbufLost]
	for id, n := range cfg.OOMKillsSeen {
		if err := p.coll.Maps[bpf.OomtraceMapOomKillsSeen].Update(id, n, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("seed OOM kill counter of cgroup %d: %w", id, err)
		}
	}

	for _, c := range choices {
		if c.form == nil {
			continue
		}
		for _, pr := range c.form.progs {
			l, err := e.attach(pr, p.coll.Programs[pr.name])
			if err != nil {
				return nil, fmt.Errorf("attach %s (%s) to %s: %w", c.Hook, c.Tier, pr.target, explainPerm(err))
			}
			p.links = append(p.links, l)
		}
	}

	p.reader, err = ringbuf.NewReader(p.coll.Maps[bpf.OomtraceMapEvents])
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return p, nil
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// ReadInto blocks for the next raw record. After Detach it returns what is
// left in the ring buffer, then ErrDrained.
func (p *Probes) ReadInto(rec *ringbuf.Record) error {
	err := p.reader.ReadInto(rec)
	switch {
	case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, os.ErrClosed):
		return ErrDrained
	}
	return err
}

// ErrDrained means the probes are detached and every record was read.
var ErrDrained = errors.New("ring buffer drained")

// Detach removes every hook, so no new record is written, and makes
// ReadInto return the records still buffered, then ErrDrained.
// The agent calls it once, when it is asked to stop.
func (p *Probes) Detach() error {
	errs := []error{p.closeLinks()}
	if p.reader != nil {
		errs = append(errs, p.reader.Flush())
	}
	return errors.Join(errs...)
}

func (p *Probes) closeLinks() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	return errors.Join(errs...)
}

// Close frees every kernel object. Hooks still attached (Load failed
// part way, or the caller never detached) are removed with them.
func (p *Probes) Close() error {
	errs := []error{p.closeLinks()}
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
	}
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}

// Counters are what the kernel side lost or chose not to report.
type Counters struct {
	// RingBufFull: records not written because the ring buffer was full.
	RingBufFull uint64 `json:"ringbuf_full"`
	// RingBufFullByEvent splits RingBufFull by the event each record
	// would have been (event.Kind*), so a lost OOM kill is told apart
	// from a lost memcg_oom summary: the oom_kill lines written plus
	// RingBufFullByEvent["oom_kill"] are the kills the kernel counted
	// while attached, when user space dropped nothing.
	RingBufFullByEvent map[string]uint64 `json:"ringbuf_full_by_event,omitempty"`
	// SeenMapFull: OOM kill counters not remembered (the map was full); the
	// next victim in such a cgroup may be misreported as killed.
	SeenMapFull uint64 `json:"seen_map_full"`
	// CtxMapFull: OOM contexts not remembered; those records lack them.
	CtxMapFull uint64 `json:"ctx_map_full"`
	// AllocNoWarn: __GFP_NOWARN allocation failures counted, not reported.
	AllocNoWarn uint64 `json:"alloc_nowarn"`
	// AllocBelowOrder: failures below --alloc-min-order.
	AllocBelowOrder uint64 `json:"alloc_below_min_order"`
	// Filtered: records Config.Filter dropped in the kernel.
	Filtered uint64 `json:"filtered,omitempty"`
	// AllocFailures: failures tallied (reported, one by one or folded);
	// AllocFolded: those of them folded, without a record of their own.
	AllocFailures uint64 `json:"alloc_failures"`
	AllocFolded   uint64 `json:"alloc_folded"`
}

// Lost is what was lost rather than left out on purpose.
func (c Counters) Lost() uint64 { return c.RingBufFull }

// counterSum is one counter, summed over the CPUs.
func (p *Probes) counterSum(which bpf.OomtraceCounter) (uint64, error) {
	var perCPU []uint64
	if err := p.counter.Lookup(uint32(which), &perCPU); err != nil {
		return 0, fmt.Errorf("read counter %d: %w", which, err)
	}
	var sum uint64
	for _, n := range perCPU {
		sum += n
	}
	return sum, nil
}

// AllocFolded is the kernel's count of failures folded, all keys
// together (Counters().AllocFolded, read alone): it moves only when some
// key's tally has something to report.
func (p *Probes) AllocFolded() (uint64, error) {
	return p.counterSum(bpf.OomtraceCounterCOUNTER_ALLOC_FOLDED)
}

// Counters sums the per-CPU counters.
func (p *Probes) Counters() (Counters, error) {
	var c Counters
	for which, dst := range map[bpf.OomtraceCounter]*uint64{
		bpf.OomtraceCounterCOUNTER_RINGBUF_FULL:      &c.RingBufFull,
		bpf.OomtraceCounterCOUNTER_SEEN_MAP_FULL:     &c.SeenMapFull,
		bpf.OomtraceCounterCOUNTER_CTX_MAP_FULL:      &c.CtxMapFull,
		bpf.OomtraceCounterCOUNTER_ALLOC_NOWARN:      &c.AllocNoWarn,
		bpf.OomtraceCounterCOUNTER_ALLOC_BELOW_ORDER: &c.AllocBelowOrder,
		bpf.OomtraceCounterCOUNTER_FILTERED:          &c.Filtered,
		bpf.OomtraceCounterCOUNTER_ALLOC_FAILURES:    &c.AllocFailures,
		bpf.OomtraceCounterCOUNTER_ALLOC_FOLDED:      &c.AllocFolded,
	} {
		n, err := p.counterSum(which)
		if err != nil {
			return c, err
		}
		*dst = n
	}
	for kind := bpf.OomtraceEventKindEVENT_OOM_KILL; kind < bpf.OomtraceEventKindEVENT_KIND_MAX; kind++ {
		var perCPU []uint64
		if err := p.lost.Lookup(uint32(kind), &perCPU); err != nil {
			return c, fmt.Errorf("read ring buffer losses of %s: %w", kindName(kind), err)
		}
		var n uint64
		for _, v := range perCPU {
			n += v
		}
		if n > 0 {
			if c.RingBufFullByEvent == nil {
				c.RingBufFullByEvent = map[string]uint64{}
			}
			c.RingBufFullByEvent[kindName(kind)] = n
		}
	}
	return c, nil
}

// Programs returns the loaded programs by name, for run statistics.
func (p *Probes) Programs() map[string]*ebpf.Program {
	if p.coll == nil {
		return nil
	}
	return p.coll.Programs
}

// ValidateRingBufSize says whether the kernel takes n bytes as the size
// of the ring buffer.
func ValidateRingBufSize(n uint32) error {
	page := uint32(os.Getpagesize())
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: want a power of two of at least %d bytes", n, page)
	}
	return nil
}
