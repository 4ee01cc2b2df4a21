// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/event"
)

// AllocLimits bound the alloc_failure records the kernel writes in a
// flood of allocation failures (bpf/alloctally.h): per key (memory
// cgroup, order, gfp) and for all keys together, a rate in records per
// second and a burst. Failures past them are folded: counted in the
// kernel, reported by a Folder as alloc_failures_folded lines.
type AllocLimits struct {
	KeyRate    float64 // records a second per key; 0: no limit
	KeyBurst   uint32
	TotalRate  float64 // records a second for all keys; 0: no limit
	TotalBurst uint32
}

// DefaultAllocLimits: a flood shows its first ten failures per key in
// full, then one a second, and the node at most twenty a second after a
// burst of fifty, whatever the number of keys.
var DefaultAllocLimits = AllocLimits{KeyRate: 1, KeyBurst: 10, TotalRate: 20, TotalBurst: 50}

// Validate says what is wrong with the limits, naming the flag.
func (l AllocLimits) Validate() error {
	for _, b := range []struct {
		name  string
		rate  float64
		burst uint32
	}{{"--alloc-rate", l.KeyRate, l.KeyBurst}, {"--alloc-rate-total", l.TotalRate, l.TotalBurst}} {
		burstFlag := strings.Replace(b.name, "rate", "burst", 1)
		switch {
		case b.rate < 0 || math.IsNaN(b.rate) || math.IsInf(b.rate, 0):
			return fmt.Errorf("%s %v: want records per second, 0 for no limit", b.name, b.rate)
		case b.rate > 0 && b.rate < 1e-3:
			return fmt.Errorf("%s %v: want at least 0.001 (one record in 1000 s), or 0 for no limit", b.name, b.rate)
		case b.rate > 0 && b.burst == 0:
			return fmt.Errorf("%s 0 with %s %v: want a burst of at least 1", burstFlag, b.name, b.rate)
		}
	}
	return nil
}

func (l AllocLimits) spec() bpf.OomtraceAllocLimits {
	var s bpf.OomtraceAllocLimits
	s.Key.IntervalNs, s.Key.ToleranceNs = bucket(l.KeyRate, l.KeyBurst)
	s.Total.IntervalNs, s.Total.ToleranceNs = bucket(l.TotalRate, l.TotalBurst)
	return s
}

// bucket is a rate and burst as the programs take them: the interval
// between records, and how far ahead of now the bucket may be booked.
func bucket(rate float64, burst uint32) (interval, tolerance uint64) {
	if rate == 0 {
		return 0, 0
	}
	interval = uint64(float64(time.Second) / rate)
	return interval, uint64(burst-1) * interval
}

// Tally is one key's counts as the kernel keeps them since FirstNS.
type Tally struct {
	Key     AllocKey
	Records uint64 // failures written as alloc_failure records
	Folded  uint64 // failures counted only
	FirstNS uint64 // boot ns the kernel made the entry
	LastNS  uint64 // boot ns of the key's latest failure
}

// AllocKey is what floods are folded by.
type AllocKey struct {
	CgroupID       uint64 // the trigger's memory cgroup (kernfs id)
	Order, GFPMask uint32
}

// Tallies reads every key's counts.
func (p *Probes) Tallies() ([]Tally, error) {
	if p.tallies == nil {
		return nil, errors.New("no allocation failure tallies loaded")
	}
	var (
		out []Tally
		k   bpf.OomtraceAllocKey
		v   bpf.OomtraceAllocTally
	)
	it := p.tallies.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Tally{Key: AllocKey{CgroupID: k.MemcgId, Order: k.Order, GFPMask: k.GfpMask}, Records: v.Records, Folded: v.Folded, FirstNS: v.FirstNs, LastNS: v.LastNs})
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return out, fmt.Errorf("read allocation failure tallies: %w", err)
	}
	return out, nil
}

// AllocSource names the hook that sees allocation failures on the tier
// attached: warn_alloc (kprobe) or mm_page_alloc (tracepoint); empty
// when none is.
func (p *Probes) AllocSource() string {
	for _, c := range p.Choices {
		if c.Hook != "page_alloc_failure" {
			continue
		}
		switch c.Tier {
		case TierKprobe, TierFentry:
			return "warn_alloc"
		case TierTracepoint:
			return "mm_page_alloc"
		}
	}
	return ""
}

// Folder turns the kernel's tallies into alloc_failures_folded events:
// for each key, what was folded since it last reported the key. Only the
// kernel adds to the counts and only the Folder takes differences, so
// every failure is reported exactly once: in an alloc_failure line or in
// a folded line's count. Not safe for concurrent use.
type Folder struct {
	dec    *Decoder
	source string
	// maxLines bounds the lines of one Fold; keys left over keep their
	// counts for the next, the longest unreported first.
	maxLines int
	keys     map[AllocKey]*foldedKey
	cgroups  map[uint64]cgroupName
	// foldedTotal is the kernel's count of folded failures (all keys)
	// when the last Fold began, and behind whether that Fold left keys
	// for the next: see Idle.
	foldedTotal uint64
	behind      bool
}

type foldedKey struct {
	firstNS         uint64 // the kernel entry the counts below belong to
	folded, records uint64 // counts up to the last line
	since           time.Time
}

type cgroupName struct {
	path      string
	truncated bool
}

// NewFolder makes a Folder writing at most maxLines lines per Fold (0:
// no bound); source names the hook (Probes.AllocSource).
func NewFolder(dec *Decoder, source string, maxLines int) *Folder {
	return &Folder{dec: dec, source: source, maxLines: maxLines, keys: map[AllocKey]*foldedKey{}, cgroups: map[uint64]cgroupName{}}
}

// SetMaxLines changes the bound on lines per Fold (0: none), e.g. for
// the last Fold, when nothing may stay unreported.
func (f *Folder) SetMaxLines(n int) { f.maxLines = n }

// Learn remembers the cgroup path of an alloc_failure event's key, for
// the folded lines of the same key.
func (f *Folder) Learn(e *event.Event) {
	if e.Event != event.KindAllocFailure || e.Alloc == nil || e.Alloc.CgroupID == 0 || e.Trigger == nil {
		return
	}
	f.cgroups[e.Alloc.CgroupID] = cgroupName{e.Trigger.Cgroup, e.Trigger.CgroupTruncated}
}

// Idle says that no key can have failures folded since the last Fold:
// the kernel's count of folded failures, foldedTotal, has not moved, and
// that Fold left nothing for later. Reading the tallies (up to 8,192
// keys, a system call or two each) every interval would otherwise keep
// an idle agent busy on a node where many cgroups once failed.
func (f *Folder) Idle(foldedTotal uint64) bool {
	return !f.behind && foldedTotal == f.foldedTotal
}

// Fold returns a line for each key with failures folded since its last
// line, as of now. foldedTotal is the kernel's count of folded failures
// (Probes.AllocFolded) read before the tallies.
func (f *Folder) Fold(tallies []Tally, foldedTotal uint64, now time.Time) []*event.Event {
	type due struct {
		t     Tally
		k     *foldedKey
		count uint64
	}
	var pending []due
	present := make(map[AllocKey]bool, len(tallies))
	ids := make(map[uint64]bool, len(tallies))
	for _, t := range tallies {
		present[t.Key], ids[t.Key.CgroupID] = true, true
		k := f.keys[t.Key]
		if k == nil || k.firstNS != t.FirstNS {
			// A new entry (the old one, if any, was pushed out of the
			// kernel's map): its counts start at zero.
			k = &foldedKey{firstNS: t.FirstNS, since: f.dec.BootToWall(t.FirstNS)}
			f.keys[t.Key] = k
		}
		if t.Folded > k.folded {
			pending = append(pending, due{t, k, t.Folded - k.folded})
		}
	}
	for key := range f.keys {
		if !present[key] {
			delete(f.keys, key)
		}
	}
	for id := range f.cgroups {
		if !ids[id] {
			delete(f.cgroups, id)
		}
	}
	slices.SortFunc(pending, func(a, b due) int {
		if c := a.k.since.Compare(b.k.since); c != 0 {
			return c
		}
		return int(min(max(int64(b.count)-int64(a.count), -1), 1))
	})
	f.foldedTotal, f.behind = foldedTotal, f.maxLines > 0 && len(pending) > f.maxLines
	if f.behind {
		pending = pending[:f.maxLines]
	}
	out := make([]*event.Event, 0, len(pending))
	for _, p := range pending {
		cg := f.cgroups[p.t.Key.CgroupID]
		a := f.dec.alloc(p.t.Key.Order, p.t.Key.GFPMask, cg.path)
		a.Node, a.Source, a.CgroupID = -1, f.source, p.t.Key.CgroupID
		out = append(out, &event.Event{
			Event: event.KindAllocFailuresFolded,
			Time:  now,
			Node:  f.dec.Node,
			Alloc: a,
			Folded: &event.Folded{
				Count:           p.count,
				Records:         p.t.Records - p.k.records,
				Cgroup:          cg.path,
				CgroupTruncated: cg.truncated,
				Since:           p.k.since,
				Last:            f.dec.BootToWall(p.t.LastNS),
			},
		})
		p.k.folded, p.k.records, p.k.since = p.t.Folded, p.t.Records, now
	}
	return out
}
