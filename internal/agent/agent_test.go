// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
)

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

// A cgroup removed before the agent reads it: the event keeps what the
// kernel captured and says why memory.stat is missing.
func TestEnrichCgroupGone(t *testing.T) {
	hier := &cgroup.Hierarchy{Version: 2, Mount: t.TempDir()}
	e := &event.Event{
		Event:      event.KindOOMKill,
		Time:       time.Now(),
		Victim:     &event.Victim{PID: 10, Cgroup: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Trigger:    &event.Trigger{PID: 10},
		Constraint: event.ConstraintMemcg,
		Memcg:      &event.Memcg{Path: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", LimitBytes: 1 << 30, UsageBytes: 1 << 30},
	}
	newEnricher(hier, 0).enrich(e)
	if e.Memcg.Stat != nil || !strings.Contains(e.Memcg.StatError, "removed") || e.Memcg.StatDelayUS == nil {
		t.Errorf("memcg %+v: want no stat, a stat_error saying the cgroup was removed, and the delay", e.Memcg)
	}
	if e.K8s == nil || e.K8s.PodUID != "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6" {
		t.Errorf("k8s %+v: identity comes from the captured path, not the cgroup", e.K8s)
	}
	if len(e.Diagnosis) == 0 || e.Diagnosis[0].Code != "pod_limit" {
		t.Errorf("diagnosis %+v: the limit level is still known", e.Diagnosis)
	}
}
