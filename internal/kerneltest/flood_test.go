// SPDX-License-Identifier: Apache-2.0

package kerneltest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

// floodScript floods the allocator with failures from the test module
// (flood=1: order-$ORDER allocations from ZONE_DMA without reclaim, all
// but the first few failing at once): first without the agent, for the
// rate the kernel manages alone, then with the agent on tier $TIER, each
// for $FLOOD_MS (twice: busybox insmod runs a failing init again). It
// reads the agent's CPU time (/proc/PID/stat, in USER_HZ = 1/100 s)
// over 3 s idle, and over the flood and the two fold intervals after it.
const floodScript = `
echo -1000 > /proc/self/oom_score_adj
result() { echo "$1 $2" >> /tmp/results; }
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
now_cs() { awk '{printf "%d", $1 * 100}' /proc/uptime; }
flood() { insmod /allocfail.ko flood=1 order=$ORDER flood_ms=$FLOOD_MS 2>/dev/null; }

flood
dmesg | grep 'oomtrace_allocfail: flood' | section baseline
dmesg -c > /dev/null

oomtrace agent --tier $TIER --metrics-addr= --node-name vm --ready-file /tmp/ready > /tmp/events.jsonl 2> /tmp/agent.log &
AGENT=$!
i=0; while [ ! -f /tmp/ready ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -f /tmp/ready ] || { section agentlog < /tmp/agent.log; exit 10; }
sleep 1
result cpu_idle $(cpu $AGENT)
result t_idle $(now_cs)
sleep 3
result cpu_before $(cpu $AGENT)
result t_before $(now_cs)
flood
result t_flood_end $(now_cs)
sleep 2
result cpu_after $(cpu $AGENT)
result t_after $(now_cs)
kill -TERM $AGENT; wait $AGENT; result agent_exit $?
section events < /tmp/events.jsonl
section agentlog < /tmp/agent.log
dmesg | grep 'oomtrace_allocfail: flood' | section flood
section results < /tmp/results
`

// floodOrder is the order the test module floods with: ZONE_DMA (16 MiB)
// has at most a few free blocks of it.
const floodOrder = 10

// flood is what one VM's flood showed.
type flood struct {
	kernel, tier string
	// From the test module: failures and how long its loop took, alone
	// and with the agent attached.
	baseFailures, failures int
	baseTime, floodTime    time.Duration
	// What the agent wrote for the flood's key, and its kernel totals.
	records, foldedLines int
	foldedCount          uint64
	counters             probe.Counters
	// The agent's CPU time over window (the flood and 2 s after it), and
	// over idleWindow before it.
	agentCPU, window, floodWall time.Duration
	idleCPU, idleWindow         time.Duration
	lines                       []*event.Event
}

// rateIn is failures a second with the agent attached.
func (f flood) rateIn() float64 { return float64(f.failures) / f.floodTime.Seconds() }

// runFlood boots k once and floods for floodFor, twice, with the agent on tier.
func runFlood(t *testing.T, g guest, k vmtest.Kernel, tier string, floodFor time.Duration) flood {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := bootOnce(t, ctx, vmtest.BootOptions{
		Kernel:    k,
		MemoryMiB: 384,
		Timeout:   4 * time.Minute,
		Files: []vmtest.File{
			{Guest: "/bin/oomtrace", Host: g.oomtrace, Mode: 0o755},
			{Guest: "/allocfail.ko", Host: g.modules[k.Series], Mode: 0o644},
		},
		Script:          fmt.Sprintf("TIER=%s\nORDER=%d\nFLOOD_MS=%d\n%s", tier, floodOrder, floodFor.Milliseconds(), floodScript),
		ConsoleLogLevel: 1,
	})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("boot %s: %v, exit %d; agent log:\n%s\nconsole (end):\n%s", k.Release, err, res.ExitStatus, res.Section("agentlog"), lastLines(res.Console, 30))
	}
	f := flood{kernel: k.Release, tier: tier}
	f.baseFailures, f.baseTime = floodLog(t, res.Section("baseline"))
	f.failures, f.floodTime = floodLog(t, res.Section("flood"))
	results := map[string]float64{}
	for _, line := range strings.Split(res.Section("results"), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok {
			results[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	if results["agent_exit"] != 0 {
		t.Fatalf("agent exited %v:\n%s", results["agent_exit"], res.Section("agentlog"))
	}
	cs := func(v float64) time.Duration { return time.Duration(v) * 10 * time.Millisecond }
	f.agentCPU = cs(results["cpu_after"] - results["cpu_before"])
	f.window = cs(results["t_after"] - results["t_before"])
	f.floodWall = cs(results["t_flood_end"] - results["t_before"])
	f.idleCPU = cs(results["cpu_before"] - results["cpu_idle"])
	f.idleWindow = cs(results["t_before"] - results["t_idle"])

	schema := eventtest.Schema(t)
	for _, line := range strings.Split(strings.TrimSpace(res.Section("events")), "\n") {
		if line == "" {
			continue
		}
		e := eventtest.Validate(t, schema, []byte(line))
		f.lines = append(f.lines, e)
		if e.Alloc == nil || e.Alloc.Order != floodOrder {
			continue
		}
		switch e.Event {
		case event.KindAllocFailure:
			f.records++
		case event.KindAllocFailuresFolded:
			f.foldedLines++
			f.foldedCount += e.Folded.Count
		}
	}
	f.counters = stoppedCounters(t, res.Section("agentlog"))
	return f
}

// floodLog sums the test module's "flood: F of N ... failed in U us"
// lines (busybox insmod runs a failing init twice).
func floodLog(t *testing.T, log string) (failed int, took time.Duration) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(line, "oomtrace_allocfail: flood: ")
		if !ok {
			continue
		}
		var f, n, order int
		var us int64
		if _, err := fmt.Sscanf(rest, "%d of %d order-%d allocations failed in %d us", &f, &n, &order, &us); err != nil {
			t.Fatalf("test module line %q: %v", line, err)
		}
		failed += f
		took += time.Duration(us) * time.Microsecond
	}
	if failed == 0 {
		t.Fatalf("the test module reported no failed allocation:\n%s", log)
	}
	return failed, took
}

// stoppedCounters reads the kernel counters from the agent's stop line.
func stoppedCounters(t *testing.T, log string) probe.Counters {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"stopped"`) {
			continue
		}
		var l struct{ Stats agent.Stats }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("agent stop line: %v\n%s", err, line)
		}
		return l.Stats.Kernel
	}
	t.Fatalf("no stop line in the agent's log:\n%s", log)
	return probe.Counters{}
}

// checkFlood asserts what a user of the default flags relies on: every
// failure accounted for exactly, lines at the configured rate.
func checkFlood(t *testing.T, f flood) {
	t.Helper()
	lim := probe.DefaultAllocLimits
	if f.failures < 1000 {
		t.Fatalf("%d failures with the agent attached: not a flood", f.failures)
	}
	if got := uint64(f.records) + f.foldedCount; got != uint64(f.failures) {
		t.Errorf("%d alloc_failure lines + %d folded = %d, the test module saw %d failures", f.records, f.foldedCount, got, f.failures)
	}
	if f.counters.AllocFailures != uint64(f.failures) || f.counters.AllocFolded != f.foldedCount {
		t.Errorf("kernel counters: %d failures, %d folded; want %d and %d (the module's count, the folded lines' sum)", f.counters.AllocFailures, f.counters.AllocFolded, f.failures, f.foldedCount)
	}
	// The burst first, then the key's rate, over the flood's wall time;
	// one more for two CPUs taking the same token at once.
	maxRecords := int(lim.KeyBurst) + int(math.Ceil(lim.KeyRate*f.floodWall.Seconds())) + 1
	if f.records < int(lim.KeyBurst) || f.records > maxRecords {
		t.Errorf("%d alloc_failure lines in a flood of %v: want the burst of %d, at most %d", f.records, f.floodWall, lim.KeyBurst, maxRecords)
	}
	// One folded line per interval (1 s) while the key floods, and the
	// last at exit.
	if maxFolded := int(math.Ceil(f.window.Seconds())) + 2; f.foldedLines == 0 || f.foldedLines > maxFolded {
		t.Errorf("%d alloc_failures_folded lines over %v: want 1 to %d", f.foldedLines, f.window, maxFolded)
	}
	if f.counters.RingBufFull != 0 {
		t.Errorf("ring buffer full %d times in a folded flood", f.counters.RingBufFull)
	}
}

// A real flood of allocation failures in a VM, on the kprobe tier
// (warn_alloc) and the tracepoint tier (mm_page_alloc): the counts are
// exact and the lines come at the configured rate.
func TestAllocFlood(t *testing.T) {
	kernels, g := matrixSetup(t)
	for _, k := range kernels {
		for _, tier := range []string{"kprobe", "tracepoint"} {
			t.Run(k.Series+"/"+tier, func(t *testing.T) {
				t.Parallel()
				if g.modules[k.Series] == "" {
					t.Skip("skipped: the test module did not build for this kernel")
				}
				f := runFlood(t, g, k, tier, 3*time.Second)
				checkFlood(t, f)
				t.Logf("%s %s: %d failures in %v (%.0f/s; %.0f/s without the agent): %d alloc_failure lines, %d folded lines counting %d; agent CPU %v over %v (idle: %v over %v)",
					f.kernel, f.tier, f.failures, f.floodTime, f.rateIn(), float64(f.baseFailures)/f.baseTime.Seconds(), f.records, f.foldedLines, f.foldedCount, f.agentCPU, f.window, f.idleCPU, f.idleWindow)
			})
		}
	}
}
