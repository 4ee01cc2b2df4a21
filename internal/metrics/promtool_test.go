// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
	"github.com/oomtrace/oomtrace/internal/probe"
)

const rulesDir = "../../deploy/prometheus"

// exampleExposition is what the handler serves after one of each event
// and with a running agent's counters.
func exampleExposition(t *testing.T) string {
	t.Helper()
	statsFile := filepath.Join(t.TempDir(), "bpf_stats_enabled")
	if err := os.WriteFile(statsFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(t, Options{bpfStatsFile: statsFile, SeriesTTL: DefaultSeriesTTL})
	m.SetSource(&fakeSource{
		kernel: probe.Counters{RingBufFull: 1},
		user:   agent.UserSpaceLoss{QueueDrops: 2},
		progs:  []agent.ProgramStat{{Name: "mark_victim", RunCount: 3}},
	})
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit, diagnose.NonInitVictim))
	m.Observe(memcgOOM("shop", "web-1", true))
	m.Observe(allocFailure(3, 0xcc0))
	m.flush()
	return scrapeText(t, m)
}

// promtool, as CI runs it, accepts the exposition: its parser and its
// lint of names, units and help.
func TestPromtoolCheckMetrics(t *testing.T) {
	metricstest.Promtool(t)
	metricstest.CheckMetrics(t, exampleExposition(t))
}

// The example alert rules load and pass their unit tests.
func TestAlertRules(t *testing.T) {
	promtool := metricstest.Promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "oomtrace-rules.yaml"},
		{"test", "rules", "oomtrace-rules.test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// Every oomtrace metric the rules use is one the agent serves: a renamed
// metric would leave a rule that never fires.
func TestAlertRulesUseServedMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(rulesDir, "oomtrace-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	served := exampleExposition(t)
	names := regexp.MustCompile(`\boomtrace_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) == 0 {
		t.Fatal("the rules use no oomtrace metric")
	}
	for _, n := range names {
		if !bytes.Contains([]byte(served), []byte("\n# TYPE "+n+" ")) {
			t.Errorf("the rules use %s, which the agent does not serve", n)
		}
	}
}
