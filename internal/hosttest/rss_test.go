// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rssTarget is the target for the agent's resident memory in a storm
// (docs/benchmarks.md).
const rssTarget = 48 << 20

// rssGrowthBound is how much the agent's resident memory may grow over
// what it held idle while its queues, caches and histories fill: they
// are bounded, so this is their bound with room for the Go heap's slack.
const rssGrowthBound = 16 << 20

// readRSS returns a process's resident memory and its high-water mark
// (VmHWM, which includes loading the probes at start).
func readRSS(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// rssWatch samples a running agent's resident memory every 50 ms.
type rssWatch struct {
	a          *agentRun
	idle       uint64
	stop, done chan struct{}
	mu         sync.Mutex
	largest    uint64
}

// watchRSS starts sampling now: the first sample is the agent idle.
func watchRSS(t *testing.T, a *agentRun) *rssWatch {
	t.Helper()
	idle, _, err := readRSS(a.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("agent RSS: %v", err)
	}
	w := &rssWatch{a: a, idle: idle, largest: idle, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if rss, _, err := readRSS(a.cmd.Process.Pid); err == nil {
				w.mu.Lock()
				w.largest = max(w.largest, rss)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *rssWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check stops sampling and fails when the agent's resident memory grew
// more than rssGrowthBound over idle, or, with target, reached rssTarget,
// during what during says. It returns the largest sample and the
// high-water mark.
func (w *rssWatch) check(t *testing.T, during string, target bool) (largest, hwm uint64) {
	t.Helper()
	w.end()
	_, hwm, err := readRSS(w.a.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("agent RSS: %v", err)
	}
	largest = w.largest
	if target && largest >= rssTarget {
		t.Errorf("agent RSS reached %.1f MiB with %s: want under %d MiB", mib(largest), during, rssTarget>>20)
	}
	if largest > w.idle+rssGrowthBound {
		t.Errorf("agent RSS grew from %.1f MiB idle to %.1f MiB with %s: want at most %d MiB more", mib(w.idle), mib(largest), during, rssGrowthBound>>20)
	}
	t.Logf("agent RSS %.1f MiB idle, at most %.1f MiB with %s (high-water mark, start-up included: %.1f MiB)", mib(w.idle), mib(largest), during, mib(hwm))
	return largest, hwm
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
