// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/benchreport"
)

// churnFigures are the agent's memory through a churn of pod cgroups.
type churnFigures struct {
	cgroups, kills     int
	took               time.Duration
	idle, largest, hwm uint64 // RSS: after start, the largest sample, VmHWM
}

// churnCgroups makes and removes cgroups pod cgroups one after another,
// one in killEvery with an OOM kill, while the agent runs with its
// metrics and trace-session history on; it checks every kill is reported
// and /metrics still served, and returns the agent's memory figures.
func churnCgroups(t *testing.T, cgroups, killEvery int) churnFigures {
	t.Helper()
	h := requireTracing(t)
	// The QoS level stays, as kubelet keeps it; the pods under it go.
	newTree(t, h).mkdir("/kubepods/burstable", 0)
	addr := freeLocalAddr(t)
	a := startAgent(t, "--metrics-addr="+addr, "--socket="+filepath.Join(t.TempDir(), "oomtrace.sock"))
	f := churnFigures{cgroups: cgroups}
	rss := watchRSS(t, a)
	f.idle = rss.idle
	start := time.Now()
	var pids []uint32
	for i := range cgroups {
		tr := newTree(t, h)
		_, _, _, dir := podContainer(t, tr)
		if i%killEvery == 0 {
			pids = append(pids, killOne(t, dir))
		}
		tr.remove()
		tr.made = nil
	}
	f.took, f.kills = time.Since(start), len(pids)
	if n := waitForMetric(t, addr, "oomtrace_oom_kills_total", float64(len(pids))); n < float64(len(pids)) {
		t.Errorf("oomtrace_oom_kills_total = %v after %d kills", n, len(pids))
	}
	f.largest, f.hwm = rss.check(t, fmt.Sprintf("%d cgroups made and removed, %d with a kill", cgroups, len(pids)), true)
	events, stats := a.stop(t)
	for _, pid := range pids {
		killOf(t, events, pid)
	}
	t.Logf("%d cgroups in %v, %d kills; stop summary %+v", cgroups, f.took.Round(time.Millisecond), len(pids), stats)
	return f
}

// Pods come and go by the thousand on a busy node: through 2,000 pod
// cgroups, one in 40 with an OOM kill, the agent's memory stays bounded
// (every cache and history has a bound) and it reports every kill.
func TestAgentMemoryBoundedOverCgroupChurn(t *testing.T) {
	churnCgroups(t, 2000, 40)
}

// The same churn, its memory figures against the target.
func TestBenchMemoryUnderCgroupChurn(t *testing.T) {
	benchreport.Require(t)
	f := churnCgroups(t, 2000, 40)
	verdict := "met"
	if f.largest >= rssTarget {
		verdict = "**missed**"
	}
	benchreport.Write(t, "42-memory-churn", fmt.Sprintf(`%d pod cgroups made and removed in %.0f s, %d with an OOM kill; metrics and trace-session history on:

| agent RSS | MiB |
|---|---|
| idle, after start | %.1f |
| largest during the churn (sampled every 50 ms) | %.1f |
| growth over idle | %.1f |
| high-water mark (VmHWM), loading the probes at start included | %.1f |
| target: under %d MiB during the churn | %s |
`, f.cgroups, f.took.Seconds(), f.kills, mib(f.idle), mib(f.largest), mib(f.largest-f.idle), mib(f.hwm), rssTarget>>20, verdict))
}
