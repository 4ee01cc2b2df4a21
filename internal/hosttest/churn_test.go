// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// Pods come and go by the thousand on a busy node: 2,000 pod cgroups are
// made and removed one after another, one in 40 with an OOM kill, while
// the agent runs with its metrics and trace-session history on. Its
// memory stays bounded (every cache and history has a bound), and it
// still reports every kill.
func TestAgentMemoryBoundedOverCgroupChurn(t *testing.T) {
	h := requireTracing(t)
	const cgroups, killEvery = 2000, 40
	// The QoS level stays, as kubelet keeps it; the pods under it go.
	newTree(t, h).mkdir("/kubepods/burstable", 0)
	addr := freeLocalAddr(t)
	a := startAgent(t, "--metrics-addr="+addr, "--socket="+filepath.Join(t.TempDir(), "oomtrace.sock"))
	idle, _ := agentRSS(t, a)
	before := vmstatOOMKills(t)
	start := time.Now()
	var pids []uint32
	var maxRSS uint64
	for i := range cgroups {
		tr := newTree(t, h)
		_, _, _, dir := podContainer(t, tr)
		if i%killEvery == 0 {
			pids = append(pids, killOne(t, dir))
		}
		tr.remove()
		tr.made = nil
		if i%100 == 0 {
			if rss, _ := agentRSS(t, a); rss > maxRSS {
				maxRSS = rss
			}
		}
	}
	took := time.Since(start)
	after := vmstatOOMKills(t)
	// /metrics is still served, with every kill.
	if n := waitForMetric(t, addr, "oomtrace_oom_kills_total", float64(len(pids))); n < float64(len(pids)) {
		t.Errorf("oomtrace_oom_kills_total = %v after %d kills", n, len(pids))
	}
	peak := checkRSSBounded(t, a, idle, fmt.Sprintf("%d cgroups made and removed, %d with a kill", cgroups, len(pids)))
	events, stats := a.stop(t)
	for _, pid := range pids {
		killOf(t, events, pid)
	}
	t.Logf("%d cgroups in %v, %d kills (vmstat +%d); RSS idle %.1f MiB, largest sample %.1f MiB, peak %.1f MiB; lost %+v",
		cgroups, took.Round(time.Millisecond), len(pids), after-before, mib(idle), mib(maxRSS), mib(peak), stats)
}
