// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// stageTimes is one line of the agent's --timings-file: microseconds
// per stage of one event.
type stageTimes = agent.TimingRecord

// latencyRun is what one scenario measured: the stage times of the
// oom_kill lines of the scenario's own pods (other OOMs on the host are
// left out), and the rate the kernel killed at.
type latencyRun struct {
	name  string
	kills []stageTimes
	rate  float64 // kills per second, from the first kill to the last
}

// Latency targets (issue 11): from the kernel's timestamp to the start of
// enrichment, and to the written line under a storm.
const (
	targetKernelToEnrich = 1000.0 // µs, p99
	targetStormWritten   = 5000.0 // µs, p99
)

// The time from the kernel's timestamp of an OOM kill to its line written
// on stdout, quiet (one kill at a time, the agent idle in between) and in
// two storms (20 pods killing at once as fast as their processes can be
// started and fill; 500 victims made ready first and signalled 5 ms
// apart, ≥ 100 kills/s), with where it goes.
//
// Each runs twice: with the kernel console as the host has it, and with
// console_loglevel 3. The kernel prints "Killed process ..." at KERN_ERR
// right after marking the victim; where the console prints errors (level
// 4, the default) on a serial port, that line is written with interrupts
// off on the killing CPU, and the ring buffer's wake-up (an irq_work on
// that CPU) waits for it: that, not the agent, is most of the time to the
// record being read. The second run shows the agent's own part.
func TestBenchLatency(t *testing.T) {
	benchreport.Require(t)
	h := requireTracing(t)

	level := consoleLogLevel(t)
	asSet := fmt.Sprintf("console_loglevel %d", level)
	if level > 3 {
		asSet += " (kill lines printed on the console)"
	}
	var runs []latencyRun
	for _, console := range []struct {
		level int
		name  string
	}{{level, asSet}, {3, "console_loglevel 3 (not printed)"}} {
		setConsoleLogLevel(t, console.level)
		runs = append(runs,
			latencyScenario(t, h, "quiet, "+console.name, false),
			latencyScenario(t, h, "storm of 20 pods, "+console.name, true),
			readyVictimScenario(t, h, fmt.Sprintf("storm of %d ready victims, %v apart, %s", readyPods*readyContainersPerPod, readyInterval, console.name)))
	}
	setConsoleLogLevel(t, level)

	var b strings.Builder
	b.WriteString("| scenario | kills | kills/s | kernel → enrichment p50 / p99 (µs) | kernel → line written p50 / p99 (µs) |\n|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s |\n", r.name, len(r.kills), r.rate,
			p50p99(r.kills, func(s stageTimes) float64 { return s.KernelToEnrichUS }),
			p50p99(r.kills, func(s stageTimes) float64 { return s.KernelToWrittenUS }))
	}
	benchreport.Write(t, "20-latency", b.String())

	b.Reset()
	b.WriteString("| stage, p50 / p99 (µs) |")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s |", r.name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(runs)) + "\n")
	stage := func(name string, f func(stageTimes) float64) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range runs {
			fmt.Fprintf(&b, " %s |", p50p99(r.kills, f))
		}
		b.WriteString("\n")
	}
	stage("kernel timestamp → record read (ring buffer wake-up, reader scheduled)", func(s stageTimes) float64 { return s.KernelToReadUS })
	stage("decode", func(s stageTimes) float64 { return s.DecodeUS })
	stage("wait for the enrichment thread", func(s stageTimes) float64 { return s.EnrichQueueUS })
	for _, step := range []struct{ key, name string }{
		{"identity", "enrich: pod identity from the cgroup path"},
		{"memcg_stat", "enrich: memory.stat of the limited cgroup"},
		{"victim_stat", "enrich: memory.stat of the victim's cgroup"},
		{"pod_stat", "enrich: memory.stat of the pod"},
		{"tasks", "enrich: task table (/proc)"},
		{"names", "enrich: names (runtime, API; beside the reads)"},
		{"diagnose", "enrich: diagnosis"},
		{"sinks", "sinks (metrics, Events, sessions)"},
	} {
		fmt.Fprintf(&b, "| %s |", step.name)
		for _, r := range runs {
			fmt.Fprintf(&b, " %s |", stepP50P99(r.kills, step.key))
		}
		b.WriteString("\n")
	}
	stage("enrichment and sinks, all steps", func(s stageTimes) float64 { return s.EnrichUS })
	stage("wait for the output thread", func(s stageTimes) float64 { return s.OutputQueueUS })
	stage("encode", func(s stageTimes) float64 { return s.EncodeUS })
	stage("write (stdout, a pipe)", func(s stageTimes) float64 { return s.WriteUS })
	benchreport.Write(t, "21-latency-stages", b.String())

	for _, r := range runs {
		if p := benchreport.Percentile(values(r.kills, func(s stageTimes) float64 { return s.KernelToEnrichUS }), 99); p >= targetKernelToEnrich {
			t.Logf("missed: %s: kernel → enrichment p99 %.0f µs, target < %.0f µs", r.name, p, targetKernelToEnrich)
		}
		if r.name[:5] != "storm" {
			continue
		}
		if p := benchreport.Percentile(values(r.kills, func(s stageTimes) float64 { return s.KernelToWrittenUS }), 99); p >= targetStormWritten {
			t.Logf("missed: %s: kernel → line p99 %.0f µs, target < %.0f µs", r.name, p, targetStormWritten)
		}
		// A figure, not a verdict: this machine's storm may be slower
		// than the target's storm, which the table then shows.
		if r.rate < 100 {
			t.Logf("not judged: %s: %.0f kills a second, the target is for at least 100", r.name, r.rate)
		}
	}
}

// consoleLogLevel is the kernel's console_loglevel: messages of a lower
// level are printed on the console.
func consoleLogLevel(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/printk")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("/proc/sys/kernel/printk %q: %v", b, err)
	}
	return n
}

// setConsoleLogLevel sets console_loglevel, and puts back what it was at
// the end of the test.
func setConsoleLogLevel(t *testing.T, level int) {
	t.Helper()
	was := consoleLogLevel(t)
	t.Cleanup(func() {
		if err := os.WriteFile("/proc/sys/kernel/printk", []byte(strconv.Itoa(was)), 0); err != nil {
			t.Errorf("restore console_loglevel %d: %v", was, err)
		}
	})
	if err := os.WriteFile("/proc/sys/kernel/printk", []byte(strconv.Itoa(level)), 0); err != nil {
		t.Fatalf("set console_loglevel %d: %v", level, err)
	}
}

// latencyScenario runs 20 pods (podStorm: kubelet's layout, a container
// init respawning a child killed at the container's limit), 25 kills
// each, under an agent that records stage times: all at once (a storm),
// or one pod after another (quiet: one kill at a time).
func latencyScenario(t *testing.T, h cgroup.Hierarchy, name string, atOnce bool) latencyRun {
	t.Helper()
	const pods, perPod = 20, 25
	tr := newTree(t, h)
	var storms []*podStorm
	if atOnce {
		storms = append(storms, newPodStorm(t, tr, pods))
	} else {
		// A container's init that ran hundreds of children would grow
		// until it is the one killed: one pod at a time instead.
		for range pods {
			storms = append(storms, newPodStorm(t, tr, 1))
		}
	}
	storm := &podStorm{h: h}
	for _, s := range storms {
		storm.containers = append(storm.containers, s.containers...)
	}
	timings := filepath.Join(t.TempDir(), "timings.jsonl")
	a := startAgent(t, "--timings-file", timings)
	for _, s := range storms {
		s.run(t, perPod)
	}
	return collectLatency(t, name, a, timings, storm, pods*perPod)
}

// A storm at the rate the target names, which the respawning storm cannot
// make on two CPUs (each of its kills is a process start and 12 MiB of page
// faults): every victim is started first, in a container of its own,
// holding its memory and waiting; the container's limit is then lowered to
// its usage and a little more, and the victims are signalled one after
// another, each signal an OOM kill a few page faults later.
const (
	readyPods, readyContainersPerPod = 20, 25 // 500 victims
	readyLimitMiB, readyHeldMiB      = 16, 6
	readyHeadroom                    = 128 << 10            // bytes above a ready victim's usage
	readyInterval                    = 5 * time.Millisecond // 200 kills/s asked
)

func readyVictimScenario(t *testing.T, h cgroup.Hierarchy, name string) latencyRun {
	t.Helper()
	tr := newTree(t, h)
	storm := &podStorm{h: h}
	for range readyPods {
		pod := "/kubepods/burstable/pod" + newPodUID(t)
		tr.mkdir(pod, 0)
		for range readyContainersPerPod {
			storm.containers = append(storm.containers, tr.mkdir(pod+"/"+newContainerID(t), readyLimitMiB<<20))
		}
	}
	bin := memhog(t)
	victims := make([]*exec.Cmd, len(storm.containers))
	exited := make([]bool, len(victims))
	// Registered after the tree's removal, so run before it.
	t.Cleanup(func() {
		for i, cmd := range victims {
			if cmd != nil && !exited[i] {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}
	})
	// Pod after pod in the order they are signalled: the kills go round
	// the pods.
	for i := range victims {
		dir := storm.containers[(i%readyPods)*readyContainersPerPod+i/readyPods]
		cmd := exec.Command(bin, "hog", "-cgroup", dir, "-adj", "0", "-pre-mib", strconv.Itoa(readyHeldMiB), "-mib", strconv.Itoa(4*readyLimitMiB), "-on-signal")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		victims[i] = cmd
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "waiting\n" {
			t.Fatalf("victim in %s said %q (%v), want waiting", dir, line, err)
		}
	}

	for _, dir := range storm.containers {
		tr.setLimit(dir, tr.usage(dir)+readyHeadroom)
	}

	timings := filepath.Join(t.TempDir(), "timings.jsonl")
	a := startAgent(t, "--timings-file", timings)
	next := time.Now()
	for _, cmd := range victims {
		if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		next = next.Add(readyInterval)
		time.Sleep(time.Until(next))
	}
	for i, cmd := range victims {
		err := cmd.Wait()
		exited[i] = true
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("victim %d ended with %v, want killed by the OOM killer", i, err)
		}
	}
	return collectLatency(t, name, a, timings, storm, len(victims))
}

// collectLatency stops the agent and reads its timings of the kills in
// storm's containers, of which there must be want.
func collectLatency(t *testing.T, name string, a *agentRun, timings string, storm *podStorm, want int) latencyRun {
	t.Helper()
	events, stats := a.stop(t)
	if stats.QueueDrops != 0 || stats.KernelDrops.RingBufFull != 0 {
		t.Errorf("%s: the agent dropped events: %+v", name, stats)
	}

	prefixes := map[string]bool{}
	for _, dir := range storm.containers {
		prefixes[cgroup.PodPath(strings.TrimPrefix(dir, storm.h.Mount))] = true
	}
	run := latencyRun{name: name}
	var first, last time.Time
	for _, e := range storm.inStorm(ofKind(events, "oom_kill")) {
		if first.IsZero() || e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	if d := last.Sub(first).Seconds(); d > 0 {
		run.rate = float64(want-1) / d
	}
	f, err := os.Open(timings)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s stageTimes
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("timings line %q: %v", sc.Text(), err)
		}
		if s.Event == "oom_kill" && prefixes[cgroup.PodPath(s.Memcg)] {
			run.kills = append(run.kills, s)
		}
	}
	if len(run.kills) < want {
		t.Fatalf("%s: %d kills timed, want the %d the pods made", name, len(run.kills), want)
	}
	return run
}

func values(xs []stageTimes, f func(stageTimes) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// p50p99 formats the median and 99th percentile of f over xs.
func p50p99(xs []stageTimes, f func(stageTimes) float64) string {
	v := values(xs, f)
	return fmt.Sprintf("%.0f / %.0f", benchreport.Percentile(v, 50), benchreport.Percentile(v, 99))
}

// stepP50P99 is p50p99 of one enrichment step over the events that ran it.
func stepP50P99(xs []stageTimes, step string) string {
	var ran []stageTimes
	for _, x := range xs {
		if _, ok := x.StepsUS[step]; ok {
			ran = append(ran, x)
		}
	}
	if len(ran) == 0 {
		return "not run"
	}
	return p50p99(ran, func(s stageTimes) float64 { return s.StepsUS[step] })
}
