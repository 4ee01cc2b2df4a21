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
	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

// floodScript floods the allocator with failures from the test module
// (flood=1: order-$ORDER allocations from ZONE_DMA without reclaim, all
// but the first few failing at once) for $FLOOD_MS, twice (busybox
// insmod runs a failing init again): first without the agent, for the
// rate the kernel manages alone; then with an agent that has the
// allocation failure hook off, for what the flood alone costs the
// agent's CPU (the control); then with the agent on tier $TIER as
// deployed; with $UNBOUNDED=1, last, with an agent that bounds nothing
// (a line for every failure), for comparison. For each agent it reads the agent's CPU time (/proc/PID/stat,
// in USER_HZ = 1/100 s) over 3 s idle, and over the flood and the two
// fold intervals after it.
const floodScript = `
echo -1000 > /proc/self/oom_score_adj
result() { echo "$1 $2" >> /tmp/results; }
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
now_cs() { awk '{printf "%d", $1 * 100}' /proc/uptime; }
flood() { insmod /allocfail.ko flood=1 order=$ORDER flood_ms=$FLOOD_MS 2>/dev/null; }
with_agent() {
	name=$1; shift
	rm -f /tmp/ready
	oomtrace agent --tier $TIER --metrics-addr= --node-name vm --ready-file /tmp/ready "$@" > /tmp/$name.jsonl 2> /tmp/$name.log &
	AGENT=$!
	i=0; while [ ! -f /tmp/ready ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	[ -f /tmp/ready ] || { section agentlog < /tmp/$name.log; exit 10; }
	sleep 1
	result ${name}_cpu_idle $(cpu $AGENT)
	result ${name}_t_idle $(now_cs)
	sleep 3
	result ${name}_cpu_before $(cpu $AGENT)
	result ${name}_t_before $(now_cs)
	dmesg -c > /dev/null
	flood
	result ${name}_t_flood_end $(now_cs)
	sleep 2
	result ${name}_cpu_after $(cpu $AGENT)
	result ${name}_t_after $(now_cs)
	kill -TERM $AGENT; wait $AGENT; result ${name}_exit $?
	dmesg | grep 'oomtrace_allocfail: flood' | section ${name}_flood
}

# A tier on which the agent refuses to start (5.10's tracepoints alone
# cannot trace OOM kills) is skipped.
oomtrace check --tier $TIER --json > /tmp/check.json
if ! grep -q '"can_trace_oom_kills": true' /tmp/check.json; then
	section check < /tmp/check.json
	result refused 1
	section results < /tmp/results
	exit 0
fi
flood
dmesg | grep 'oomtrace_allocfail: flood' | section baseline
with_agent control --alloc-failures=false
with_agent agent $AGENT_FLAGS
section events < /tmp/agent.jsonl
section agentlog < /tmp/agent.log
# For comparison, no bound on the lines: a record for every failure.
if [ "$UNBOUNDED" = 1 ]; then
	with_agent unbounded --alloc-rate=0 --alloc-rate-total=0
	result unbounded_lines $(wc -l < /tmp/unbounded.jsonl)
	section unbounded_log < /tmp/unbounded.log
fi
section results < /tmp/results
`

// floodOrder is the order the test module floods with: ZONE_DMA (16 MiB)
// has at most a few free blocks of it.
const floodOrder = 10

// flood is what one VM's flood showed.
type flood struct {
	kernel, tier string
	limits       probe.AllocLimits // the agent's
	// From the test module: failures and how long its loop took, alone
	// and with the agent attached.
	baseFailures, failures int
	baseTime, floodTime    time.Duration
	// What the agent wrote for the flood's key, and its kernel totals.
	records, foldedLines int
	foldedCount          uint64
	counters             probe.Counters
	// The agent's CPU time over window (the flood and 2 s after it), and
	// over idleWindow before it; control is the same for an agent with
	// the allocation failure hook off.
	agent, control agentCPU
	// The same with no bound on the lines (floodOptions.unbounded): the
	// agent's CPU, the lines it wrote, and its kernel counters.
	unbounded         agentCPU
	unboundedLines    int
	unboundedCounters probe.Counters
	lines             []*event.Event
}

// rateIn is failures a second with the agent attached.
func (f flood) rateIn() float64 { return float64(f.failures) / f.floodTime.Seconds() }

// floodOptions: how runFlood floods.
type floodOptions struct {
	duration time.Duration // of each of the test module's two runs
	// unbounded adds a run with an agent that writes a line per failure.
	unbounded bool
	// limits are the agent's --alloc-rate and the others (zero: the
	// defaults, no flags).
	limits probe.AllocLimits
}

// flags are the agent's flags for o.limits.
func (o floodOptions) flags() string {
	if o.limits == (probe.AllocLimits{}) {
		return ""
	}
	l := o.limits
	return fmt.Sprintf("--alloc-rate=%v --alloc-burst=%d --alloc-rate-total=%v --alloc-burst-total=%d", l.KeyRate, l.KeyBurst, l.TotalRate, l.TotalBurst)
}

// limitsOrDefault are the limits the agent ran with.
func (o floodOptions) limitsOrDefault() probe.AllocLimits {
	if o.limits == (probe.AllocLimits{}) {
		return probe.DefaultAllocLimits
	}
	return o.limits
}

// runFlood boots k once and floods, with the agent on tier.
func runFlood(t *testing.T, g guest, k vmtest.Kernel, tier string, o floodOptions) flood {
	t.Helper()
	// Four floods with three agents take minutes under a loaded host.
	timeout := vmTimeout(k, 7*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	res, err := bootOnce(t, ctx, vmtest.BootOptions{
		Kernel:          k,
		MemoryMiB:       384,
		Timeout:         timeout,
		Files:           g.files(k),
		Script:          fmt.Sprintf("TIER=%s\nORDER=%d\nFLOOD_MS=%d\nUNBOUNDED=%d\nAGENT_FLAGS=%q\n%s", tier, floodOrder, o.duration.Milliseconds(), boolInt(o.unbounded), o.flags(), floodScript),
		ConsoleLogLevel: 1,
	})
	if err != nil || res.ExitStatus != 0 {
		t.Fatalf("boot %s: %v, exit %d; agent log:\n%s\nconsole (end):\n%s", k.Release, err, res.ExitStatus, res.Section("agentlog"), lastLines(res.Console, 30))
	}
	results := map[string]float64{}
	for _, line := range strings.Split(res.Section("results"), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok {
			results[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	if results["refused"] == 1 {
		t.Skipf("skipped: the agent does not run on %s with --tier=%s: %s", k.Release, tier, checkConclusion(res.Section("check")))
	}
	f := flood{kernel: k.Release, tier: tier, limits: o.limitsOrDefault()}
	f.baseFailures, f.baseTime = floodLog(t, res.Section("baseline"))
	f.failures, f.floodTime = floodLog(t, res.Section("agent_flood"))
	if results["agent_exit"] != 0 || results["control_exit"] != 0 {
		t.Fatalf("agent exited %v (the control %v):\n%s", results["agent_exit"], results["control_exit"], res.Section("agentlog"))
	}
	f.agent, f.control = agentCPUOf(results, "agent_"), agentCPUOf(results, "control_")
	if o.unbounded {
		f.unbounded = agentCPUOf(results, "unbounded_")
		f.unboundedLines = int(results["unbounded_lines"])
		f.unboundedCounters = stoppedCounters(t, res.Section("unbounded_log"))
		for _, line := range strings.Split(res.Section("unbounded_log"), "\n") {
			if strings.Contains(line, `"msg":"stopped"`) || strings.Contains(line, `"level":"warn"`) {
				t.Logf("agent with no bound: %s", line)
			}
		}
	}

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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkConclusion is oomtrace check's one-line verdict.
func checkConclusion(checkJSON string) string {
	var r probe.Report
	if err := json.Unmarshal([]byte(checkJSON), &r); err != nil {
		return checkJSON
	}
	return r.Conclusion
}

// agentCPU is an agent's CPU time over a flood and the 2 s after it
// (window; the flood itself took floodWall), and over 3 s idle before.
type agentCPU struct {
	flood, window, floodWall time.Duration
	idle, idleWindow         time.Duration
}

// share is CPU time over a wall time, in percent of one CPU.
func share(cpu, wall time.Duration) float64 { return 100 * cpu.Seconds() / wall.Seconds() }

func agentCPUOf(results map[string]float64, prefix string) agentCPU {
	v := func(name string) float64 { return results[prefix+name] }
	cs := func(x float64) time.Duration { return time.Duration(x) * 10 * time.Millisecond }
	return agentCPU{
		flood:      cs(v("cpu_after") - v("cpu_before")),
		window:     cs(v("t_after") - v("t_before")),
		floodWall:  cs(v("t_flood_end") - v("t_before")),
		idle:       cs(v("cpu_before") - v("cpu_idle")),
		idleWindow: cs(v("t_before") - v("t_idle")),
	}
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

// checkFlood asserts what a user relies on: every failure accounted for
// exactly, lines at the rate the flags set.
func checkFlood(t *testing.T, f flood) {
	t.Helper()
	lim := f.limits
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
	maxRecords := int(lim.KeyBurst) + int(math.Ceil(lim.KeyRate*f.agent.floodWall.Seconds())) + 1
	// At least the burst and the rate over the time the module failed,
	// less the edges.
	minRecords := int(lim.KeyBurst) + int(lim.KeyRate*f.floodTime.Seconds()) - 2
	if f.records < max(minRecords, int(lim.KeyBurst)) || f.records > maxRecords {
		t.Errorf("%d alloc_failure lines in a flood of %v (%v failing): want %d to %d (burst %d, %v a second)", f.records, f.agent.floodWall, f.floodTime, minRecords, maxRecords, lim.KeyBurst, lim.KeyRate)
	}
	// One folded line per interval (1 s) while the key floods, and the
	// last at exit.
	if maxFolded := int(math.Ceil(f.agent.window.Seconds())) + 2; f.foldedLines == 0 || f.foldedLines > maxFolded {
		t.Errorf("%d alloc_failures_folded lines over %v: want 1 to %d", f.foldedLines, f.agent.window, maxFolded)
	}
	if f.counters.RingBufFull != 0 {
		t.Errorf("ring buffer full %d times in a folded flood", f.counters.RingBufFull)
	}
}

// A real flood of allocation failures in a VM, on the kprobe tier
// (warn_alloc) and the tracepoint tier (mm_page_alloc): the counts are
// exact and the lines come at the configured rate.
//
// amd64 kernels only: the matrix proves allocation failures on arm64, and
// arm64's slower emulation would double this test's share of CI.
func TestAllocFlood(t *testing.T) {
	kernels, g := matrixSetup(t)
	for _, k := range kernels {
		if arch(k) != vmtest.AMD64.Name {
			continue
		}
		for _, tier := range []string{"kprobe", "tracepoint"} {
			t.Run(k.Series+"/"+tier, func(t *testing.T) {
				t.Parallel()
				if g.modules[k.Name()] == "" {
					t.Skip(g.moduleSkip(k))
				}
				// Not the defaults: the flags must reach the kernel.
				f := runFlood(t, g, k, tier, floodOptions{duration: 3 * time.Second, limits: probe.AllocLimits{KeyRate: 5, KeyBurst: 2, TotalRate: 20, TotalBurst: 50}})
				checkFlood(t, f)
				for _, e := range f.lines {
					if e.Event == event.KindAllocFailuresFolded {
						if buf, err := event.EncodeLine(e); err == nil {
							t.Logf("a folded line: %s", buf.Bytes())
							buf.Free()
						}
						break
					}
				}
				t.Logf("%s %s: %d failures in %v (%.0f/s; %.0f/s without the agent): %d alloc_failure lines, %d folded lines counting %d; agent CPU %v over %v (hook off: %v; idle: %v over %v)",
					f.kernel, f.tier, f.failures, f.floodTime, f.rateIn(), float64(f.baseFailures)/f.baseTime.Seconds(), f.records, f.foldedLines, f.foldedCount, f.agent.flood, f.agent.window, f.control.flood, f.agent.idle, f.agent.idleWindow)
			})
		}
	}
}

// The flood benchmark: failures in, lines out, folded counts, and what
// the flood costs the agent's CPU, against the same agent with the hook
// off in the same VM (qemu TCG: rates are the emulator's, ratios hold).
func TestBenchAllocFlood(t *testing.T) {
	benchreport.Require(t)
	kernels, g := matrixSetup(t)
	var flow, cpu strings.Builder
	flow.WriteString("| kernel | tier | failures/s, no agent | failures/s, agent | failures | alloc_failure lines | folded lines | folded count | exact | lines/s out |\n")
	flow.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	cpu.WriteString("| kernel | tier | agent CPU idle | flood, folded (defaults) | flood, hook off | flood, no bound: CPU | no bound: lines/s | no bound: folded, ring buffer full |\n")
	cpu.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, k := range kernels {
		// ZONE_DMA is 16 MiB on amd64 only: elsewhere the module's
		// requests would not fail.
		if arch(k) != vmtest.AMD64.Name {
			continue
		}
		if g.modules[k.Name()] == "" {
			// As TestAllocFlood skips it; the row says so.
			t.Logf("%s: %s", k.Name(), g.moduleSkip(k))
			fmt.Fprintf(&flow, "| %s | both | not run: no test module for this kernel (see the test log) | | | | | | | |\n", k.Release)
			continue
		}
		for _, tier := range []string{"kprobe", "tracepoint"} {
			var f flood
			if !t.Run(k.Series+"/"+tier, func(t *testing.T) {
				f = runFlood(t, g, k, tier, floodOptions{duration: 2 * time.Second, unbounded: true})
				checkFlood(t, f)
				if f.unboundedLines <= f.records+f.foldedLines {
					t.Errorf("the agent with no bound wrote %d lines, the bounded one %d: --alloc-rate=0 did not reach the kernel", f.unboundedLines, f.records+f.foldedLines)
				}
			}) || f.failures == 0 {
				fmt.Fprintf(&flow, "| %s | %s | not run: see the test log | | | | | | | |\n", k.Release, tier)
				continue
			}
			exact := "yes"
			if uint64(f.records)+f.foldedCount != uint64(f.failures) || f.counters.AllocFailures != uint64(f.failures) {
				exact = "NO"
			}
			fmt.Fprintf(&flow, "| %s | %s | %.0f | %.0f | %d | %d | %d | %d | %s | %.1f |\n",
				f.kernel, f.tier, float64(f.baseFailures)/f.baseTime.Seconds(), f.rateIn(), f.failures, f.records, f.foldedLines, f.foldedCount, exact,
				float64(f.records+f.foldedLines)/f.agent.window.Seconds())
			pct := func(c agentCPU) string { return fmt.Sprintf("%.1f %%", share(c.flood, c.window)) }
			fmt.Fprintf(&cpu, "| %s | %s | %.1f %% | %s | %s | %s | %.0f | %d |\n",
				f.kernel, f.tier, share(f.agent.idle, f.agent.idleWindow), pct(f.agent), pct(f.control), pct(f.unbounded),
				float64(f.unboundedLines)/f.unbounded.window.Seconds(), f.unboundedCounters.AllocFolded)
		}
	}
	benchreport.Write(t, "50-alloc-flood", flow.String()+"\nThe agent's CPU, in % of one CPU, over each flood and the 2 s after it (idle: 3 s before it), in the same VM:\n\n"+cpu.String()+
		"\nqemu TCG, 2 vCPUs, 384 MiB (the emulator's rates, not real hardware's; a loaded host slows the guest); the test module floods order-10 ZONE_DMA allocations without reclaim for 2 × 2 s per arm; lines/s over the flood and 2 s after it.\n")
}
