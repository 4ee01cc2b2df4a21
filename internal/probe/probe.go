// SPDX-License-Identifier: Apache-2.0

// Package probe loads oomtrace's BPF programs, attaches them to the
// kernel's OOM hooks, and reads their records from the ring buffer.
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
)

// DefaultRingBufSize holds about 1,600 OOM records (2.6 KiB each): far more
// than the kernel can kill between two reads, since kills are serialized.
const DefaultRingBufSize = 4 << 20

// Config is what the probes need before load.
type Config struct {
	// RingBufSize in bytes: a power of two and a multiple of the page size.
	RingBufSize uint32
	// OOMKillsSeen seeds the per-memcg OOM kill counters (kernfs id to
	// count) of cgroups that had kills before the agent started, so the
	// first victim marked in them is told apart correctly.
	OOMKillsSeen map[uint64]uint64
}

// Hook is one kernel hook and how it is attached.
type Hook struct {
	Name    string // the kernel function or tracepoint
	Tier    Tier
	Program string // BPF program name
}

// Probes are the loaded and attached BPF programs and their ring buffer.
type Probes struct {
	objs   bpf.OomkillObjects
	links  []link.Link
	reader *ringbuf.Reader
	Hooks  []Hook
}

// Load loads the BPF objects into the kernel and attaches every hook. On
// error nothing stays loaded or attached.
func Load(cfg Config) (_ *Probes, err error) {
	if cfg.RingBufSize == 0 {
		cfg.RingBufSize = DefaultRingBufSize
	}
	if err := validateRingBufSize(cfg.RingBufSize); err != nil {
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

	spec, err := bpf.LoadOomkill()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	spec.Maps[bpf.OomkillMapEvents].MaxEntries = cfg.RingBufSize

	p := &Probes{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load BPF programs: %w", explainLoad(err))
	}
	for id, n := range cfg.OOMKillsSeen {
		if err := p.objs.OomKillsSeen.Update(id, n, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("seed OOM kill counter of cgroup %d: %w", id, err)
		}
	}

	l, err := link.AttachTracing(link.TracingOptions{Program: p.objs.MarkVictim, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, fmt.Errorf("attach tp_btf/mark_victim: %w", explainPerm(err))
	}
	p.links = append(p.links, l)
	p.Hooks = append(p.Hooks, Hook{Name: "oom:mark_victim", Tier: TierTracepoint, Program: bpf.OomkillProgMarkVictim})

	p.reader, err = ringbuf.NewReader(p.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return p, nil
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
func (p *Probes) Detach() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.reader != nil {
		errs = append(errs, p.reader.Flush())
	}
	return errors.Join(errs...)
}

// Close detaches the hooks and frees every kernel object.
func (p *Probes) Close() error {
	errs := []error{p.Detach()}
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// Drops sums, over CPUs, the records the BPF side could not deliver.
func (p *Probes) Drops() (Drops, error) {
	var d Drops
	for reason, dst := range map[bpf.OomkillDropReason]*uint64{
		bpf.OomkillDropReasonDROP_RINGBUF_FULL:  &d.RingBufFull,
		bpf.OomkillDropReasonDROP_SEEN_MAP_FULL: &d.SeenMapFull,
	} {
		var perCPU []uint64
		if err := p.objs.Drops.Lookup(uint32(reason), &perCPU); err != nil {
			return d, fmt.Errorf("read drop counter %d: %w", reason, err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	return d, nil
}

// Drops counts what the kernel side lost.
type Drops struct {
	// RingBufFull: records not written because the ring buffer was full.
	RingBufFull uint64 `json:"ringbuf_full"`
	// SeenMapFull: OOM kill counters not remembered (the map was full); the
	// next victim in such a cgroup may be misreported as killed.
	SeenMapFull uint64 `json:"seen_map_full"`
}

func validateRingBufSize(n uint32) error {
	page := uint32(os.Getpagesize())
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: want a power of two of at least %d bytes", n, page)
	}
	return nil
}
