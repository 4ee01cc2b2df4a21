// SPDX-License-Identifier: Apache-2.0

package bpftest

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/bpf"
)

// limits are a flood's rates as the agent's flags give them.
type limits struct {
	keyRate, keyBurst     float64 // per key: records per second, burst
	totalRate, totalBurst float64 // every key together; rate 0: no limit
}

// args turns rates into the programs' intervals and tolerances.
func (l limits) args() []uint64 {
	bucket := func(rate, burst float64) (uint64, uint64) {
		if rate == 0 {
			return 0, 0
		}
		interval := uint64(float64(time.Second) / rate)
		return interval, uint64(burst-1) * interval
	}
	ki, kt := bucket(l.keyRate, l.keyBurst)
	ti, tt := bucket(l.totalRate, l.totalBurst)
	return []uint64{ki, kt, ti, tt}
}

type allocKey struct {
	memcg uint64
	order uint32
	gfp   uint32
}

// tally runs one failure of k at boot time at through tally_failure and
// says whether it got a record of its own.
func tally(t *testing.T, objs *HelpersObjects, k allocKey, at time.Duration, l limits) bool {
	t.Helper()
	args := append([]uint64{k.memcg, uint64(k.order), uint64(k.gfp), uint64(at)}, l.args()...)
	switch ret := run(t, objs.TallyFailure, args...); ret {
	case 0, 1:
		return ret == 1
	default:
		t.Fatalf("tally_failure returned %d: the tally map refused the key", ret)
	}
	return false
}

func tallyOf(t *testing.T, objs *HelpersObjects, k allocKey) HelpersAllocTally {
	t.Helper()
	var v HelpersAllocTally
	if err := objs.AllocTallies.Lookup(HelpersAllocKey{MemcgId: k.memcg, Order: k.order, GfpMask: k.gfp}, &v); err != nil {
		t.Fatalf("tally of %+v: %v", k, err)
	}
	return v
}

// A flood of one key: 1,000 failures a second for 10 s, allowed 2
// records a second with bursts of 5: the first 5 are written, then about
// 2 a second, never more than burst + rate × window in any window, and
// records + folded is every failure.
func TestAllocTallyFloodOfOneKey(t *testing.T) {
	objs := load(t)
	l := limits{keyRate: 2, keyBurst: 5}
	k := allocKey{memcg: 42, order: 9, gfp: 0x346cca}
	start := 100 * time.Second
	const n = 10000
	var written []time.Duration
	for i := 0; i < n; i++ {
		at := start + time.Duration(i)*time.Millisecond
		if tally(t, objs, k, at, l) {
			written = append(written, at)
		}
	}
	if len(written) < 5 || written[4] != start+4*time.Millisecond {
		t.Fatalf("records at %v: want the first 5 failures written (the burst)", written)
	}
	// 10 s at 2/s after a burst of 5: 5 + 20, give or take the edge.
	if len(written) < 24 || len(written) > 25 {
		t.Errorf("%d records in 10 s: want 5 + 2 × 10 (24 or 25)", len(written))
	}
	for i := range written {
		for j := i; j < len(written); j++ {
			window := written[j] - written[i]
			if allowed := 5 + int(l.keyRate*window.Seconds()); j-i+1 > allowed {
				t.Fatalf("%d records within %v: want at most %d", j-i+1, window, allowed)
			}
		}
	}
	v := tallyOf(t, objs, k)
	if v.Records != uint64(len(written)) || v.Records+v.Folded != n {
		t.Errorf("tally records %d folded %d: want %d written, %d in all", v.Records, v.Folded, len(written), n)
	}
	if v.FirstNs != uint64(start) || v.LastNs != uint64(start+(n-1)*time.Millisecond) {
		t.Errorf("tally first_ns %d last_ns %d: want %d and %d", v.FirstNs, v.LastNs, uint64(start), uint64(start+(n-1)*time.Millisecond))
	}
}

// Keys have buckets of their own, and the global bucket bounds them all:
// 100 cgroups failing at once, each allowed a burst of 3, get 10 records
// in all when the global burst is 10; the rest are folded, per key.
func TestAllocTallyKeysAndGlobalBucket(t *testing.T) {
	objs := load(t)
	at := 50 * time.Second
	own := limits{keyRate: 1, keyBurst: 3}
	a, b := allocKey{memcg: 1, order: 3, gfp: 0xcc0}, allocKey{memcg: 2, order: 3, gfp: 0xcc0}
	var na, nb int
	for i := 0; i < 5; i++ {
		if tally(t, objs, a, at, own) {
			na++
		}
		if tally(t, objs, b, at, own) {
			nb++
		}
	}
	if na != 3 || nb != 3 {
		t.Errorf("records of two keys failing together: %d and %d, want a burst of 3 each", na, nb)
	}
	// Another order or other flags are another key.
	if !tally(t, objs, allocKey{memcg: 1, order: 4, gfp: 0xcc0}, at, own) || !tally(t, objs, allocKey{memcg: 1, order: 3, gfp: 0x2cc0}, at, own) {
		t.Error("a failure of another order or other flags in the same cgroup was folded: want a key of its own")
	}

	global := limits{keyRate: 1, keyBurst: 3, totalRate: 1, totalBurst: 10}
	at += time.Hour // every bucket full again
	written := 0
	for m := uint64(1000); m < 1100; m++ {
		if tally(t, objs, allocKey{memcg: m, order: 2, gfp: 0}, at, global) {
			written++
		}
	}
	if written != 10 {
		t.Errorf("100 keys failing at once under a global burst of 10: %d records, want 10", written)
	}
	var folded uint64
	for m := uint64(1000); m < 1100; m++ {
		v := tallyOf(t, objs, allocKey{memcg: m, order: 2, gfp: 0})
		if v.Records+v.Folded != 1 {
			t.Fatalf("key %d: records %d folded %d, want one failure", m, v.Records, v.Folded)
		}
		folded += v.Folded
	}
	if folded != 90 {
		t.Errorf("folded %d, want 90", folded)
	}
}

// Rate 0 is no limit: every failure is written.
func TestAllocTallyNoLimit(t *testing.T) {
	objs := load(t)
	k := allocKey{memcg: 7, order: 1, gfp: 0}
	for i := 0; i < 100; i++ {
		if !tally(t, objs, k, time.Second, limits{}) {
			t.Fatalf("failure %d folded with no limit set", i)
		}
	}
	if v := tallyOf(t, objs, k); v.Records != 100 || v.Folded != 0 {
		t.Errorf("records %d folded %d, want 100 and 0", v.Records, v.Folded)
	}
}

// Both CPUs failing on one key at once: the counts stay exact (atomic
// adds), whatever the buckets let through.
func TestAllocTallyExactAcrossCPUs(t *testing.T) {
	objs := load(t)
	k := allocKey{memcg: 9, order: 10, gfp: 0x10}
	l := limits{keyRate: 10, keyBurst: 10, totalRate: 100, totalBurst: 100}
	const workers, each = 4, 5000
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			n := 0
			for i := 0; i < each; i++ {
				if tally(t, objs, k, time.Duration(i)*time.Microsecond, l) {
					n++
				}
			}
			mu.Lock()
			written += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	v := tallyOf(t, objs, k)
	if v.Records != uint64(written) || v.Records+v.Folded != workers*each {
		t.Errorf("records %d (programs said %d), folded %d: want %d in all", v.Records, written, v.Folded, workers*each)
	}
	var folded []uint64
	if err := objs.Counters.Lookup(uint32(bpf.OomtraceCounterCOUNTER_ALLOC_FOLDED), &folded); err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, n := range folded {
		sum += n
	}
	if sum != v.Folded {
		t.Errorf("COUNTER_ALLOC_FOLDED %d, tally folded %d", sum, v.Folded)
	}
	t.Logf("%d failures on %d threads: %d written, %d folded", workers*each, workers, v.Records, v.Folded)
}
