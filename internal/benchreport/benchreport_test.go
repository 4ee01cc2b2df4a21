// SPDX-License-Identifier: Apache-2.0

package benchreport

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestPercentileAndMedian(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		p    float64
		want float64
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Median(xs); got != 5.5 {
		t.Errorf("Median(1..10) = %v, want 5.5", got)
	}
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median(3,1,2) = %v, want 2", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) || !math.IsNaN(Median(nil)) {
		t.Error("no values should give NaN")
	}
	if xs[0] != 5 {
		t.Error("Percentile sorted its input in place")
	}
	if got := Range([]float64{82.3, 60, 77.1}, "%.1f"); got != "77.1 (60.0–82.3)" {
		t.Errorf("Range = %q", got)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("OOMTRACE_BENCH_OUT", dir)
	Write(t, "10-example", "| a |\n|---|\n| 1 |\n\n\n")
	b, err := os.ReadFile(filepath.Join(dir, "10-example.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "| a |\n|---|\n| 1 |\n" {
		t.Errorf("written table = %q", b)
	}
}
