// SPDX-License-Identifier: Apache-2.0

// Package benchreport is what `make bench` is made of: tests named
// TestBench* that run only when OOMTRACE_BENCH=1 (they take minutes and
// want a quiet machine), measure, and write their result as a markdown
// table, one file per table, into $OOMTRACE_BENCH_OUT. make bench prints
// them together under a line naming the machine, kernel and date; those
// tables are the ones in docs/benchmarks.md.
package benchreport

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Require skips t unless benchmarks were asked for (OOMTRACE_BENCH=1) and
// it runs as root (every benchmark here loads BPF programs or makes
// memory cgroups).
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("OOMTRACE_BENCH") != "1" {
		t.Skip("skipped: a benchmark; run it with make bench (OOMTRACE_BENCH=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: benchmarks need root (BPF programs, memory cgroups)")
	}
}

// Write records one result table under name (a file name without
// extension, e.g. "20-latency"; make bench prints them in name order).
// The table is also logged, so `go test -v` shows it without make.
func Write(t testing.TB, name, markdown string) {
	t.Helper()
	markdown = strings.TrimRight(markdown, "\n") + "\n"
	t.Logf("%s:\n%s", name, markdown)
	dir := os.Getenv("OOMTRACE_BENCH_OUT")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("benchmark output directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(markdown), 0o644); err != nil {
		t.Fatalf("write benchmark table %s: %v", name, err)
	}
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by the
// nearest-rank method, NaN for no values. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

// Median is the 50th percentile; with an even count, the mean of the
// two middle values.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Range formats a median with its minimum and maximum, as the tables
// quote them: "77.1 (60.0–82.3)".
func Range(xs []float64, format string) string {
	if len(xs) == 0 {
		return "no data"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return fmt.Sprintf(format+" ("+format+"–"+format+")", Median(s), s[0], s[len(s)-1])
}
