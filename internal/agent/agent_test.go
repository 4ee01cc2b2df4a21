// SPDX-License-Identifier: Apache-2.0

package agent

import "testing"

func TestVictimSet(t *testing.T) {
	v := newVictimSet(2)
	for i, tc := range []struct {
		oom  uint64
		pid  uint32
		want bool
	}{
		{1, 10, true},
		{1, 10, false}, // the same process again in the same OOM
		{2, 10, true},  // a later OOM
		{1, 11, true},  // evicts (1, 10)
		{1, 10, true},
	} {
		if got := v.add(tc.oom, tc.pid); got != tc.want {
			t.Errorf("step %d: add(%d, %d) = %v, want %v", i, tc.oom, tc.pid, got, tc.want)
		}
	}
}
