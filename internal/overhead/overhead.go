// SPDX-License-Identifier: Apache-2.0

// Package overhead is the shared part of the workload overhead
// benchmarks, on this machine (internal/hosttest) and in VMs
// (internal/kerneltest): which runs make a round, in which order, and
// how internal/allocload's results become the table of
// docs/benchmarks.md.
package overhead

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/oomtrace/oomtrace/internal/benchreport"
)

// The arms of a round: the workload without the agent, with it, and with
// it but without the page allocation failure hook.
const (
	None     = "without the agent"
	Agent    = "agent"
	AllocOff = "agent --alloc-failures=false"
)

// Arms lists them, in the table's order.
var Arms = []string{None, Agent, AllocOff}

// AgentArgs are the agent's extra arguments per arm (nil: no agent).
var AgentArgs = map[string][]string{Agent: {}, AllocOff: {"--alloc-failures=false"}}

// Order is the arms' order in a round: every permutation in turn, so no
// arm always runs first (after an agent stopped) or last.
func Order(round int) []string {
	perms := [][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}, {0, 2, 1}, {1, 0, 2}}
	p := perms[round%len(perms)]
	return []string{Arms[p[0]], Arms[p[1]], Arms[p[2]]}
}

// Repeats is how often a round runs each workload in each arm.
const Repeats = 3

// Workload is one internal/allocload run.
type Workload struct {
	Mode string // fault, pagecache, pipe
	MiB  int
}

// Args are allocload's arguments; dir holds the page cache file. The
// workload runs under SCHED_FIFO: preempted by others, its CPU time
// varied by a fifth on this shared machine, by a tenth without.
func (w Workload) Args(dir string) []string {
	args := []string{w.Mode, "-mib", strconv.Itoa(w.MiB), "-fifo"}
	if w.Mode == "pagecache" {
		args = append(args, "-dir", dir)
	}
	return args
}

// HostWorkloads take about 0.1–0.15 s of CPU each on this machine.
var HostWorkloads = []Workload{{"fault", 32}, {"pagecache", 512}, {"pipe", 256}}

// VMWorkloads are smaller: qemu emulates the guest's CPU.
var VMWorkloads = []Workload{{"fault", 16}, {"pagecache", 32}, {"pipe", 32}}

// Measurements collect allocload's results by workload, arm and round.
type Measurements struct {
	arms  []string
	modes []string
	cpu   map[string]map[string]map[int]float64 // mode → arm → round → µs
	wall  map[string]map[string]map[int]float64
}

// New starts an empty collection for arms.
func New(arms []string) *Measurements {
	return &Measurements{arms: arms, cpu: map[string]map[string]map[int]float64{}, wall: map[string]map[string]map[int]float64{}}
}

// Add records allocload's output line, "<mode> cpu_us=N wall_us=N". Of
// several runs of one workload in one arm and round, the fastest counts:
// the machine's other load only ever adds time.
func (m *Measurements) Add(round int, arm, line string) error {
	f := strings.Fields(line)
	if len(f) != 3 {
		return fmt.Errorf("allocload printed %q, want \"<mode> cpu_us=N wall_us=N\"", line)
	}
	mode := f[0]
	var cpu, wall float64
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("allocload printed %q: %v", line, err)
		}
		switch k {
		case "cpu_us":
			cpu = n
		case "wall_us":
			wall = n
		}
	}
	if cpu == 0 || wall == 0 {
		return fmt.Errorf("allocload printed %q: no CPU or wall time", line)
	}
	if m.cpu[mode] == nil {
		m.modes = append(m.modes, mode)
		m.cpu[mode], m.wall[mode] = map[string]map[int]float64{}, map[string]map[int]float64{}
	}
	for _, d := range []struct {
		to map[string]map[int]float64
		v  float64
	}{{m.cpu[mode], cpu}, {m.wall[mode], wall}} {
		if d.to[arm] == nil {
			d.to[arm] = map[int]float64{}
		}
		if old, ok := d.to[arm][round]; !ok || d.v < old {
			d.to[arm][round] = d.v
		}
	}
	return nil
}

// ratios are arm's times over the no-agent times of the same rounds.
func ratios(by map[string]map[int]float64, arm string) []float64 {
	var rounds []int
	for r := range by[arm] {
		if _, ok := by[None][r]; ok {
			rounds = append(rounds, r)
		}
	}
	sort.Ints(rounds)
	var out []float64
	for _, r := range rounds {
		out = append(out, by[arm][r]/by[None][r])
	}
	return out
}

func values(m map[int]float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// overheadText is a median ratio as an overhead with its interquartile
// range: "+1.2 % (−0.8 – +3.1)".
func overheadText(rs []float64) string {
	if len(rs) == 0 {
		return "no data"
	}
	pct := func(r float64) string { return fmt.Sprintf("%+.1f", (r-1)*100) }
	return fmt.Sprintf("%s %% (%s – %s)", pct(benchreport.Median(rs)), pct(benchreport.Percentile(rs, 25)), pct(benchreport.Percentile(rs, 75)))
}

// Target is what the agent may cost: the agent's overhead at most Agent
// (a fraction), or else, with the allocation failure hook off, at most
// AllocOff (the documented fallback).
type Target struct {
	Agent, AllocOff float64
}

// Table is the result as markdown, and the targets missed, one sentence
// each.
func (m *Measurements) Table(target Target) (string, []string) {
	var b strings.Builder
	var missed []string
	fmt.Fprintf(&b, "| workload | CPU time without the agent, ms | CPU overhead, agent | CPU overhead, agent --alloc-failures=false | wall-clock overhead, agent | target |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|\n")
	for _, mode := range m.modes {
		agent, off := ratios(m.cpu[mode], Agent), ratios(m.cpu[mode], AllocOff)
		verdict := fmt.Sprintf("≤ %.0f %%", target.Agent*100)
		switch {
		case len(agent) == 0:
			verdict += " not measured"
		case benchreport.Median(agent)-1 <= target.Agent:
			verdict += " met"
		case len(off) > 0 && benchreport.Median(off)-1 <= target.AllocOff:
			verdict += fmt.Sprintf(" missed; ≤ %.0f %% with --alloc-failures=false met", target.AllocOff*100)
		default:
			verdict += " **missed**"
			missed = append(missed, fmt.Sprintf("%s: the agent costs %s of CPU time, want ≤ %.0f %% (or ≤ %.0f %% with --alloc-failures=false: %s)",
				mode, overheadText(agent), target.Agent*100, target.AllocOff*100, overheadText(off)))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", mode,
			benchreport.Range(scale(values(m.cpu[mode][None]), 1e-3), "%.0f"),
			overheadText(agent), overheadText(off), overheadText(ratios(m.wall[mode], Agent)), verdict)
	}
	fmt.Fprintf(&b, "\nEach round runs every workload %d times in each arm, the arms in an order that changes every round; the fastest run of each counts. Overheads: median over rounds of (time with the agent / time without it in the same round) − 1, with the interquartile range; times without the agent: median (min–max).\n", Repeats)
	return b.String(), missed
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}
