// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
)

// scrapeMetrics fetches /metrics from an agent's listener.
func scrapeMetrics(t *testing.T, addr string) (string, metricstest.Samples) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, b)
	}
	s, err := metricstest.Parse(string(b))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, b)
	}
	return string(b), s
}

// What Prometheus scrapes from a real agent: the OOM kills the kernel
// counted are in oomtrace_oom_kills_total, nothing is lost, the BPF
// programs' own run statistics are there while the kernel keeps them,
// and promtool accepts the exposition.
func TestMetricsOfRealKills(t *testing.T) {
	h := requireTracing(t)
	const kills = 5
	tr := newTree(t, h)
	dir := tr.mkdir(fmt.Sprintf("/kubepods/besteffort/pod%s/%s", newPodUID(t), newContainerID(t)), 32<<20)

	// Run statistics on for as long as this fd is open (also when the
	// test dies), as kernel.bpf_stats_enabled=1 would turn them on.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Skipf("skipped: BPF run statistics (BPF_ENABLE_STATS, Linux 5.8): %v", err)
	}
	defer stats.Close()

	addr := freeLocalAddr(t)
	a := startAgent(t, "--metrics-addr="+addr)
	for range kills {
		if err := startHog(t, dir, 64, "exit").wait(t); !killedBySIGKILL(err) {
			t.Fatalf("64 MiB process in a 32 MiB cgroup: exit %v, want killed by SIGKILL", err)
		}
	}
	kernel := oomKillCount(t, h, dir)
	if kernel != kills {
		t.Fatalf("the kernel counted %d kills in %s, want %d", kernel, dir, kills)
	}

	// The kills reach the metrics a moment after the processes die. The
	// agent sees every kill on this machine, so others' may add to ours.
	var text string
	var got metricstest.Samples
	deadline := time.Now().Add(10 * time.Second)
	for {
		text, got = scrapeMetrics(t, addr)
		if got.Sum("oomtrace_oom_kills_total") >= kills || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := got.Sum("oomtrace_oom_kills_total", `constraint="memcg"`); n < kills {
		t.Errorf("oomtrace_oom_kills_total{constraint=\"memcg\"} sums to %v; the kernel counted %d kills in the test's cgroup:\n%s",
			n, kills, got.Family("oomtrace_oom_kills_total"))
	}
	if n, m := got.Sum("oomtrace_oom_kills_total"), got.Sum("oomtrace_events_total", `event="oom_kill"`); n != m {
		t.Errorf("oom_kills_total sums to %v, events_total{event=\"oom_kill\"} is %v", n, m)
	}
	for _, stage := range []string{"kernel_ringbuf", "decode_queue", "output_queue", "metrics_queue"} {
		k := metricstest.Key("oomtrace_events_lost_total", map[string]string{"stage": stage})
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
	// The sysctl's value: statistics turned on by a file descriptor, as
	// here, do not show in it.
	if _, ok := got["oomtrace_bpf_stats_enabled{}"]; !ok {
		t.Error("oomtrace_bpf_stats_enabled is missing")
	}
	if runs := got.Sum("oomtrace_bpf_program_runs_total"); runs < kills {
		t.Errorf("the BPF programs ran %v times in all for %d kills:\n%s", runs, kills, got.Family("oomtrace_bpf_program_runs_total"))
	}
	t.Logf("the probes' own cost for %d kills:\n%s\n%s", kills,
		got.Family("oomtrace_bpf_program_runs_total"), got.Family("oomtrace_bpf_program_run_seconds_total"))
	if got.Sum("oomtrace_bpf_program_run_seconds_total") <= 0 {
		t.Errorf("no BPF run time:\n%s", got.Family("oomtrace_bpf_program_run_seconds_total"))
	}
	if !strings.Contains(text, "\ngo_goroutines ") || !strings.Contains(text, "\nprocess_resident_memory_bytes ") {
		t.Error("the Go and process collectors are missing")
	}
	metricstest.CheckMetrics(t, text)
	a.stop(t)
}
