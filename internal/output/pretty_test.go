// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/internal/event"
)

func TestPrettyCard(t *testing.T) {
	e := sampleEvent()
	e.Diagnosis = []event.Finding{{Code: "pod_limit", Summary: "The pod-level limit fired."}}
	e.Memcg.Stat = &event.MemoryStat{AnonBytes: 120 << 20, ShmemBytes: 1 << 20}
	e.Tasks = []event.Task{{PID: 32308, Comm: "stress", RSSBytes: 100 << 20, OOMScoreAdj: 939, Points: 54124}}
	e.Victim.Comm = "evil\n  ! pod_limit: forged"
	var buf bytes.Buffer
	if err := NewPretty(&buf).Write(e); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "OOM KILL (group)") || !strings.HasPrefix(lines[1], "  ! pod_limit: The pod-level limit fired.") {
		t.Errorf("headline and diagnosis first:\n%s", out)
	}
	for _, want := range []string{"limit    /kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c: 123 MiB used of 123 MiB", "anon 120 MiB", "points 54124", "container a2ed67c63e82 (Burstable)", "stack    oom_kill_process+0x219 < out_of_memory+0x1ba"} {
		if !strings.Contains(out, want) {
			t.Errorf("card lacks %q:\n%s", want, out)
		}
	}
	forged := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "  ! ") {
			forged++
		}
	}
	if forged != 1 {
		t.Errorf("a process name forged a diagnosis line:\n%s", out)
	}
}

// Names, when known, lead the pod row; the IDs follow; what could not be
// named is said.
func TestPrettyNames(t *testing.T) {
	e := sampleEvent()
	e.K8s.Namespace, e.K8s.Pod, e.K8s.Container = "shop", "web-7c9d8f6b5-x2x4q", "app"
	e.K8s.Workload = &event.Workload{Kind: "Deployment", Name: "web"}
	e.K8s.LookupError = "workload: api: no pod on node node-1"
	var buf bytes.Buffer
	if err := NewPretty(&buf).Write(e); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"pod      shop/web-7c9d8f6b5-x2x4q, container app (Deployment web, Burstable)\n",
		"         pod uid bc001ffa-68fc-11e9-92d7-5ef9efd9374c, container a2ed67c63e82\n",
		"names    workload: api: no pod on node node-1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("card lacks %q:\n%s", want, out)
		}
	}
}

// A folded line says how many failures it stands for, of which key, when.
func TestPrettyFolded(t *testing.T) {
	var buf bytes.Buffer
	if err := NewPretty(&buf).Write(sampleAllocFolded()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"PAGE ALLOCATION FAILURES, FOLDED  2026-11-22 09:00:01.000Z  node-1\n",
		"alloc    order 9 (2 MiB) GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL on any node, seen by warn_alloc\n",
		"folded   4981 more failures in /kubepods/besteffort/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6 (cgroup id 4242) from 09:00:00.000 to 09:00:00.999, besides 1 alloc_failure lines\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("card lacks %q:\n%s", want, out)
		}
	}
}
