// SPDX-License-Identifier: Apache-2.0

// Package metricstest reads a Prometheus exposition as a test needs it:
// samples by name and labels, sums over a pod's series, and promtool's
// verdict on the text.
package metricstest

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// Samples maps `name{label="value",...}` (labels sorted, empty values
// left out as Prometheus leaves them out) to the sample's value.
type Samples map[string]float64

// Parse reads a text exposition (counters and gauges; the rest is left out).
func Parse(text string) (Samples, error) {
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	out := Samples{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			default:
				continue
			}
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			out[Key(name, labels)] = v
		}
	}
	return out, nil
}

// Key is a sample's key in Samples.
func Key(name string, labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Sum adds the samples of metric name whose labels include every one of
// match (`pod="web-1"`, ...), as sum(name{...}) in PromQL does.
func (s Samples) Sum(name string, match ...string) float64 {
	var sum float64
	for k, v := range s {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		inner := "," + strings.TrimSuffix(strings.TrimPrefix(k, name+"{"), "}") + ","
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(inner, ","+m+",")
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// Family lists the samples of one metric, one a line, for failure messages.
func (s Samples) Family(name string) string {
	var lines []string
	for k, v := range s {
		if strings.HasPrefix(k, name+"{") {
			lines = append(lines, fmt.Sprintf("  %s %v", k, v))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Promtool is the promtool binary, or skips the test naming it.
func Promtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("skipped: promtool not found (Debian package prometheus; make deps installs it)")
	}
	return p
}

// CheckMetrics runs `promtool check metrics` on an exposition: its
// parser and its lint (names, units, help) must accept it.
func CheckMetrics(t testing.TB, text string) {
	t.Helper()
	cmd := exec.Command(Promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}
