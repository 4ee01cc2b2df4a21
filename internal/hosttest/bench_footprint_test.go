// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// Footprint targets (issue 11).
const (
	targetIdleRSSMiB  = 32.0
	targetStormRSSMiB = 48.0
	targetIdleCPU     = 0.1 // % of one CPU
	targetReady       = time.Second
)

// memSample is one reading of the agent's memory, in KiB.
type memSample struct {
	rss, anon, file int64 // VmRSS, RssAnon, RssFile (+RssShmem)
	ringBuf         int64 // of the RSS: the BPF ring buffer's mapping
}

// The agent's memory and CPU idle for 60 s and during a storm of kills,
// and the time from its start to ready, as it ships: the binary built as
// make build builds it, the metrics listener on; no names (no container
// runtime or Kubernetes API on this host).
func TestBenchFootprint(t *testing.T) {
	benchreport.Require(t)
	h := requireTracing(t)
	bin := filepath.Join(t.TempDir(), "oomtrace")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../../cmd/oomtrace")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build oomtrace as make build does: %v\n%s", err, out)
	}
	// The agent runs in a memory cgroup of its own, as in its pod: what
	// the cgroup is charged (its heap, the binary's page cache, the BPF
	// maps) is what the DaemonSet's memory request and limit are about.
	tr := newTree(t, h)
	rel := "/oomtrace-bench-agent-" + newContainerID(t)[:8]
	cg := tr.mkdir(rel, 0)
	// The harness runs its own build through wrap: this one joins the
	// cgroup and runs the release build instead, in the same process.
	wrap := []string{"sh", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && shift && exec %s "$@"`, cg, bin), "sh"}
	start := func() *agentRun {
		a, err := launchAgentVia(t, agentReadyTimeout, nil, wrap, "--metrics-addr", freeLocalAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// Start to ready, five times.
	var ready []float64
	for i := 0; i < 5; i++ {
		a := start()
		ready = append(ready, float64(a.readyAfter.Microseconds())/1e3)
		a.stop(t)
	}

	a := start()
	pid := a.cmd.Process.Pid
	loadPeak := readStatusKiB(t, pid, "VmHWM")

	// Idle: 60 s after a few seconds to settle.
	time.Sleep(5 * time.Second)
	cpu0, t0 := cpuTime(t, pid), time.Now()
	var idle []memSample
	for time.Since(t0) < 60*time.Second {
		idle = append(idle, readMem(t, pid))
		time.Sleep(time.Second)
	}
	idleCPU := 100 * (cpuTime(t, pid) - cpu0).Seconds() / time.Since(t0).Seconds()

	idleCgroup := readCgroupMem(t, h, rel)

	// Storm: 20 pods killing at once, 25 times each, RSS read every 50 ms.
	storm := newPodStorm(t, tr, 20)
	ctx, stopSampling := context.WithCancel(context.Background())
	var stormMem []memSample
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			stormMem = append(stormMem, readMem(t, pid))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	cpu1, t1 := cpuTime(t, pid), time.Now()
	stormErr := storm.runIn(memhog(t), 25)
	stormSecs := time.Since(t1).Seconds()
	stormCPU := 100 * (cpuTime(t, pid) - cpu1).Seconds() / stormSecs
	stopSampling()
	<-sampled
	if stormErr != nil {
		// The idle figures still stand: the table is written, the
		// storm's rows marked.
		t.Error(stormErr)
	}
	stormCgroup := readCgroupMem(t, h, rel)
	events, _ := a.stop(t)
	kills := len(storm.inStorm(ofKind(events, "oom_kill")))

	var b strings.Builder
	b.WriteString("| measure | value | target |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| start to ready, median of 5 (min–max) | %s ms | < %v |\n", benchreport.Range(ready, "%.0f"), targetReady)
	fmt.Fprintf(&b, "| RSS idle, 60 s: median (max) | %s | < %.0f MiB |\n", rssCell(idle), targetIdleRSSMiB)
	fmt.Fprintf(&b, "| of it: Go heap and runtime (anonymous) / binary (file) / BPF ring buffer mapping | %s | |\n", splitCell(idle))
	fmt.Fprintf(&b, "| CPU idle, 60 s | %.3f %% of a CPU | < %.1f %% |\n", idleCPU, targetIdleCPU)
	stormName := fmt.Sprintf("a storm of %d kills in 20 pods in %.1f s", kills, stormSecs)
	if stormErr != nil {
		stormName += ", NOT FINISHED: a pod's 25 kills took over 3 minutes"
	}
	fmt.Fprintf(&b, "| RSS in %s: median (max) | %s | < %.0f MiB |\n", stormName, rssCell(stormMem), targetStormRSSMiB)
	fmt.Fprintf(&b, "| of it at its max: anonymous / file / ring buffer | %s | |\n", splitCell([]memSample{maxRSS(stormMem)}))
	fmt.Fprintf(&b, "| CPU in the storm | %.1f %% of a CPU | |\n", stormCPU)
	fmt.Fprintf(&b, "| peak while loading the probes (VmHWM before the idle minute) | %.1f MiB | |\n", float64(loadPeak)/1024)
	fmt.Fprintf(&b, "| the agent's memory cgroup, idle: usage / working set (usage − inactive file) | %.1f / %.1f MiB | |\n", kibToMiB(idleCgroup.usage), kibToMiB(idleCgroup.workingSet))
	fmt.Fprintf(&b, "| the agent's memory cgroup, after the storm: usage / working set / peak usage since start | %.1f / %.1f / %.1f MiB | |\n", kibToMiB(stormCgroup.usage), kibToMiB(stormCgroup.workingSet), kibToMiB(stormCgroup.peak))
	benchreport.Write(t, "30-footprint", b.String())
}

// cgroupMem is a memory cgroup's charge, in KiB.
type cgroupMem struct{ usage, workingSet, peak int64 }

// readCgroupMem reads the charge of the cgroup at rel (cgroup v1 or v2).
func readCgroupMem(t *testing.T, h cgroup.Hierarchy, rel string) cgroupMem {
	t.Helper()
	dir := filepath.Join(h.Mount, rel)
	usageFile, peakFile, inactive := "memory.current", "memory.peak", "inactive_file"
	if h.Version == 1 {
		usageFile, peakFile, inactive = "memory.usage_in_bytes", "memory.max_usage_in_bytes", "total_inactive_file"
	}
	num := func(file string) int64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, file, err)
		}
		return n >> 10
	}
	m := cgroupMem{usage: num(usageFile), peak: num(peakFile)}
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, inactive+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			m.workingSet = m.usage - n>>10
		}
	}
	return m
}

// readStatusKiB reads one "Key: N kB" line of /proc/PID/status.
func readStatusKiB(t *testing.T, pid int, key string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

// readMem reads the agent's RSS, split by kind, and how much of it the
// ring buffer's mapping is: the kernel maps its data pages twice (so a
// record that wraps around reads as one), all resident.
func readMem(t *testing.T, pid int) memSample {
	m := memSample{
		rss:  readStatusKiB(t, pid, "VmRSS"),
		anon: readStatusKiB(t, pid, "RssAnon"),
		file: readStatusKiB(t, pid, "RssFile") + readStatusKiB(t, pid, "RssShmem"),
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inRing := false
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			inRing = strings.HasSuffix(line, "anon_inode:bpf-map")
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && inRing {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			m.ringBuf += n
		}
	}
	return m
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) in its parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / time.Duration(clockTicks)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

func kibToMiB(kib int64) float64 { return float64(kib) / 1024 }

func rssCell(xs []memSample) string {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = kibToMiB(x.rss)
	}
	return fmt.Sprintf("%.1f MiB (%.1f)", benchreport.Median(v), benchreport.Percentile(v, 100))
}

// splitCell is the median of each part of the RSS.
func splitCell(xs []memSample) string {
	var anon, file, ring []float64
	for _, x := range xs {
		anon, file, ring = append(anon, kibToMiB(x.anon)), append(file, kibToMiB(x.file-x.ringBuf)), append(ring, kibToMiB(x.ringBuf))
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f MiB", benchreport.Median(anon), benchreport.Median(file), benchreport.Median(ring))
}

func maxRSS(xs []memSample) memSample {
	var m memSample
	for _, x := range xs {
		if x.rss > m.rss {
			m = x
		}
	}
	return m
}
