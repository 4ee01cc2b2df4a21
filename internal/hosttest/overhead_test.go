// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/overhead"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

var (
	allocloadOnce sync.Once
	allocloadBin  string
	allocloadErr  error
)

// allocload returns internal/allocload built for this package, once.
func allocload(t *testing.T) string {
	t.Helper()
	allocloadOnce.Do(func() {
		allocloadBin = filepath.Join(binDir, "allocload")
		allocloadErr = vmtest.BuildStatic(context.Background(), "../..", "./internal/allocload", allocloadBin)
	})
	if allocloadErr != nil {
		t.Fatal(allocloadErr)
	}
	return allocloadBin
}

// overheadRounds: the machine's other load moves a run's CPU time by
// ±20 %; the ratio of two runs of one round, and its median over many
// rounds, is what stays put.
const overheadRounds = 21

// TestBenchWorkloadOverhead measures what the running agent costs an
// allocation-heavy workload on this kernel: internal/allocload's page
// faults, page cache churn and pipe ping-pong, each timed (its CPU time,
// user and system: the probes run in its context) without the agent,
// with it, and with it but --alloc-failures=false, in an order that
// changes every round.
//
//	BENCH_RUN='^TestBenchWorkloadOverhead$' make bench
func TestBenchWorkloadOverhead(t *testing.T) {
	benchreport.Require(t)
	requireTracing(t)
	load := allocload(t)
	dir := t.TempDir()

	allocTier := "none"
	for _, h := range probe.Check(probe.TierNone).Hooks {
		if h.Hook == "page_alloc_failure" {
			allocTier = h.Tier
		}
	}
	m := overhead.New(overhead.Arms)
	for round := 0; round < overheadRounds; round++ {
		for _, arm := range overhead.Order(round) {
			var a *agentRun
			if args := overhead.AgentArgs[arm]; args != nil {
				var err error
				a, err = launchAgentTo(t, agentReadyTimeout, io.Discard, args...)
				if err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < overhead.Repeats*len(overhead.HostWorkloads); i++ {
				w := overhead.HostWorkloads[i%len(overhead.HostWorkloads)]
				out, err := exec.Command(load, w.Args(dir)...).Output()
				if err != nil {
					t.Fatalf("allocload %v: %v", w.Args(dir), err)
				}
				if err := m.Add(round, arm, string(out)); err != nil {
					t.Fatal(err)
				}
			}
			if a != nil {
				a.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-a.exited:
				case <-time.After(20 * time.Second):
					t.Fatalf("agent still running 20 s after SIGTERM; stderr:\n%s", a.stderr.String())
				}
			}
		}
	}
	table, missed := m.Table(overhead.Target{Agent: 0.03, AllocOff: 0.01})
	table += "\n" + strconv.Itoa(overheadRounds) + " rounds on kernel " + kernelRelease() + " (page allocation failures on the " + allocTier + " tier).\n"
	benchreport.Write(t, "11-workload-overhead", table)
	// A benchmark records a miss (the table says it); it does not fail.
	for _, s := range missed {
		t.Log("missed: " + s)
	}
}
