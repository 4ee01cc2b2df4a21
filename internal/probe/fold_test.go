// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
)

func foldDecoder() *Decoder {
	return &Decoder{Node: "n1", PageSize: 4096, BootToWall: func(ns uint64) time.Time { return time.Unix(0, int64(ns)).UTC() }}
}

// counts sums what a run of Folds reported per key.
func counts(lines []*event.Event) map[AllocKey]uint64 {
	out := map[AllocKey]uint64{}
	for _, e := range lines {
		out[AllocKey{e.Alloc.CgroupID, e.Alloc.Order, e.Alloc.GFPMask}] += e.Folded.Count
	}
	return out
}

// Every folded failure is reported once: a key's lines add up to the
// kernel's count, however often the Folder looks; a key with nothing new
// gets no line.
func TestFolderReportsEachCountOnce(t *testing.T) {
	f := NewFolder(foldDecoder(), "warn_alloc", 0)
	a := AllocKey{CgroupID: 42, Order: 9, GFPMask: 0x346cca}
	f.Learn(&event.Event{Event: event.KindAllocFailure, Trigger: &event.Trigger{Cgroup: "/pods/a"}, Alloc: &event.Alloc{CgroupID: 42}})
	now := time.Unix(100, 0)
	var all []*event.Event
	for i, tally := range []Tally{
		{Key: a, Records: 10, Folded: 0, FirstNS: 1e9, LastNS: 2e9},
		{Key: a, Records: 11, Folded: 900, FirstNS: 1e9, LastNS: 3e9},
		{Key: a, Records: 11, Folded: 900, FirstNS: 1e9, LastNS: 3e9},
		{Key: a, Records: 12, Folded: 1900, FirstNS: 1e9, LastNS: 4e9},
	} {
		if idle, want := f.Idle(tally.Folded), i == 0 || i == 2; idle != want {
			t.Errorf("fold %d: Idle(%d) = %v, want %v (only while the kernel's total stays where the last fold left it)", i, tally.Folded, idle, want)
		}
		lines := f.Fold([]Tally{tally}, tally.Folded, now.Add(time.Duration(i)*time.Second))
		if want := map[int]int{0: 0, 1: 1, 2: 0, 3: 1}[i]; len(lines) != want {
			t.Fatalf("fold %d: %d lines, want %d", i, len(lines), want)
		}
		all = append(all, lines...)
	}
	if got := counts(all)[a]; got != 1900 {
		t.Errorf("folded lines count %d in all, want the kernel's 1900", got)
	}
	first, second := all[0].Folded, all[1].Folded
	if first.Records != 11 || second.Records != 1 {
		t.Errorf("records %d then %d: want 11 (since the key's first failure) then 1", first.Records, second.Records)
	}
	if !first.Since.Equal(time.Unix(1, 0)) || !second.Since.Equal(now.Add(time.Second)) || !second.Last.Equal(time.Unix(4, 0)) {
		t.Errorf("spans %v..%v then %v..%v: want from the first failure, then from the previous line, to the latest failure", first.Since, first.Last, second.Since, second.Last)
	}
	e := all[1]
	if e.Event != event.KindAllocFailuresFolded || e.Folded.Cgroup != "/pods/a" || e.Alloc.Node != -1 || e.Alloc.Source != "warn_alloc" || e.Node != "n1" {
		t.Errorf("line %+v %+v: want the key's cgroup, node -1 and the source", e, e.Folded)
	}
}

// A key the kernel pushed out and made again starts from zero; a key
// that is gone is forgotten.
func TestFolderNewEntry(t *testing.T) {
	f := NewFolder(foldDecoder(), "mm_page_alloc", 0)
	a := AllocKey{CgroupID: 1, Order: 3}
	now := time.Unix(100, 0)
	f.Fold([]Tally{{Key: a, Folded: 500, FirstNS: 1}}, 500, now)
	lines := f.Fold([]Tally{{Key: a, Folded: 7, FirstNS: 50}}, 507, now.Add(time.Second))
	if len(lines) != 1 || lines[0].Folded.Count != 7 {
		t.Fatalf("after the entry was made again: %v, want one line of 7", lines)
	}
	f.Fold(nil, 507, now.Add(2*time.Second))
	if len(f.keys) != 0 || len(f.cgroups) != 0 {
		t.Errorf("keys %v cgroups %v kept after the kernel dropped them", f.keys, f.cgroups)
	}
}

// At most maxLines lines a Fold; the keys left over keep their counts and
// come first next time, so none waits for ever.
func TestFolderBoundsLines(t *testing.T) {
	f := NewFolder(foldDecoder(), "warn_alloc", 2)
	now := time.Unix(100, 0)
	var tallies []Tally
	var total uint64
	for id := uint64(1); id <= 5; id++ {
		tallies = append(tallies, Tally{Key: AllocKey{CgroupID: id, Order: 2}, Folded: id * 10, FirstNS: id})
		total += id * 10
	}
	var all []*event.Event
	for i := 0; i < 3; i++ {
		if i > 0 && f.Idle(total) {
			t.Fatalf("fold %d: Idle with keys left over from the last fold", i)
		}
		lines := f.Fold(tallies, total, now.Add(time.Duration(i)*time.Second))
		if len(lines) > 2 {
			t.Fatalf("fold %d: %d lines, want at most 2", i, len(lines))
		}
		all = append(all, lines...)
	}
	if !f.Idle(total) {
		t.Error("not Idle once every key was reported and the total stayed")
	}
	got := counts(all)
	for _, tl := range tallies {
		if got[tl.Key] != tl.Folded {
			t.Errorf("key %d: %d reported after three folds, want %d", tl.Key.CgroupID, got[tl.Key], tl.Folded)
		}
	}
}

func TestAllocLimits(t *testing.T) {
	if err := DefaultAllocLimits.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []AllocLimits{{KeyRate: -1}, {KeyRate: 1, KeyBurst: 0}, {TotalRate: 1e-6, TotalBurst: 1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	s := AllocLimits{KeyRate: 2, KeyBurst: 5}.spec()
	if s.Key.IntervalNs != 5e8 || s.Key.ToleranceNs != 2e9 || s.Total.IntervalNs != 0 {
		t.Errorf("rate 2 burst 5: %+v, want interval 0.5 s, tolerance 2 s, no global limit", s)
	}
}
