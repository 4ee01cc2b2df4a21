// SPDX-License-Identifier: Apache-2.0

package overhead

import (
	"strings"
	"testing"
)

func TestOrderUsesEveryPermutation(t *testing.T) {
	seen := map[string]bool{}
	first := map[string]int{}
	for r := 0; r < 6; r++ {
		o := Order(r)
		seen[strings.Join(o, ",")] = true
		first[o[0]]++
	}
	if len(seen) != 6 {
		t.Errorf("6 rounds gave %d orders, want all 6", len(seen))
	}
	for _, a := range Arms {
		if first[a] != 2 {
			t.Errorf("%s first in %d of 6 rounds, want 2", a, first[a])
		}
	}
}

func TestTableRatiosPerRound(t *testing.T) {
	m := New(Arms)
	for r, line := range map[int][3]string{
		0: {"fault cpu_us=1000 wall_us=1000", "fault cpu_us=1100 wall_us=1000", "fault cpu_us=1000 wall_us=1000"},
		1: {"fault cpu_us=2000 wall_us=2000", "fault cpu_us=2200 wall_us=2000", "fault cpu_us=2000 wall_us=2000"},
	} {
		for i, arm := range Arms {
			if err := m.Add(r, arm, line[i]+"\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	table, missed := m.Table(Target{Agent: 0.03, AllocOff: 0.01})
	if !strings.Contains(table, "| fault | 2 (1–2) | +10.0 % (+10.0 – +10.0) | +0.0 % (+0.0 – +0.0) | +0.0 % (+0.0 – +0.0) | ≤ 3 % missed; ≤ 1 % with --alloc-failures=false met |") {
		t.Errorf("table:\n%s", table)
	}
	if len(missed) != 0 {
		t.Errorf("missed %v, want none: the fallback met its target", missed)
	}
	if _, missed := m.Table(Target{Agent: 0.03, AllocOff: -0.01}); len(missed) != 1 {
		t.Errorf("missed %v, want the fault workload", missed)
	}
	if err := m.Add(0, None, "fault cpu_us=x wall_us=1"); err == nil {
		t.Error("a line without a number was taken")
	}
}
