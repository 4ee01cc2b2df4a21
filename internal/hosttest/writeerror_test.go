// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"os"
	"testing"
)

// An event line that could not be written (stdout on a full disk) is a
// write error in the stop summary, not a written event.
func TestWriteErrorsAreCounted(t *testing.T) {
	h := requireTracing(t)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("skipped: no /dev/full: %v", err)
	}
	defer full.Close()
	tr := newTree(t, h)
	pod := "/kubepods/burstable/pod" + newPodUID(t)
	tr.mkdir(pod, 32<<20)
	ctr := tr.mkdir(pod+"/"+newContainerID(t), -1)

	a, err := launchAgentTo(t, agentReadyTimeout, full)
	if err != nil {
		t.Fatal(err)
	}
	p := startHog(t, ctr, 64, "exit")
	if err := p.wait(t); !killedBySIGKILL(err) {
		t.Fatalf("hog exit %v, want killed by the OOM killer", err)
	}
	events, stats := a.stop(t)
	if len(events) != 0 {
		t.Fatalf("%d lines reached a stdout that takes none", len(events))
	}
	if stats.WriteErrors == 0 {
		t.Errorf("stop summary: write_errors 0 after an OOM kill with stdout on /dev/full: %+v", stats)
	}
	for kind, n := range stats.Events {
		if n != 0 {
			t.Errorf("stop summary counts %d %s events as written; none were", n, kind)
		}
	}
}
