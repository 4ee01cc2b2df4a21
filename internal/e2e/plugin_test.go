// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// An operator on the host runs `kubectl oomtrace trace -n NS POD`: the
// plugin (on PATH) finds the pod's node and the agent there, and the
// session shows that pod's kill and not another pod's kill that happens
// while it runs; it ends after --count 1 with status 0. Run afterwards
// with --since 5m, it returns the same kill, byte for byte, and as a
// table it names the pod. A pod that
// does not exist is an error with status 2 that names the namespace.
func TestPlugin(t *testing.T) {
	c := newCluster(t)
	if out, err := exec.Command(c.kubectl, "plugin", "list").CombinedOutput(); !strings.Contains(string(out), "kubectl-oomtrace") {
		t.Fatalf("kubectl does not find the plugin on PATH (%v):\n%s", err, out)
	}
	ns := c.namespace(t, "e2e-plugin")
	mine := c.startRespawning(t, ns, "mine")
	other := c.startRespawning(t, ns, "other")
	s := c.startSession(t, "oomtrace", "trace", "-n", ns, mine.Metadata.Name, "--count", "1", "--for", "60s", "-o", "json")

	c.signalHog(t, other, "main")
	c.waitEvent(t, "for pod other's OOM", eventTimeout, ofPod(other.Metadata.UID))
	c.signalHog(t, mine, "main")
	select {
	case <-s.exited:
	case <-time.After(eventTimeout):
		t.Fatalf("plugin's session still running %v after the pod's OOM; stderr:\n%s", eventTimeout, s.stderr.String())
	}
	if s.err != nil {
		t.Fatalf("plugin's session: %v; stderr:\n%s", s.err, s.stderr.String())
	}
	t.Logf("plugin session's summary:\n%s", s.stderr.String())
	live := parseEvents([]byte(s.stdout.String()))
	if len(live) != 1 || live[0].Event != "oom_kill" || live[0].K8s == nil ||
		live[0].K8s.PodUID != mine.Metadata.UID || live[0].K8s.Pod != mine.Metadata.Name || live[0].K8s.Namespace != ns {
		t.Fatalf("plugin showed %d events, want exactly pod %s/%s's kill:\n%s", len(live), ns, mine.Metadata.Name, s.stdout.String())
	}

	start := time.Now()
	out, err := c.run("", "oomtrace", "trace", "-n", ns, mine.Metadata.Name, "--since", "5m", "--for", "3s", "-o", "json")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("plugin with --since 5m: %v", err)
	}
	replayed := parseEvents([]byte(out))
	if len(replayed) != 1 || replayed[0].line != live[0].line {
		t.Errorf("plugin with --since 5m showed %d events, want the kill from before it started:\n got %s\nwant %s", len(replayed), out, live[0].line)
	}
	t.Logf("plugin with --since 5m --for 3s took %v", took.Round(10*time.Millisecond))

	// The table an operator reads: the pod's row names it.
	table, err := c.run("", "oomtrace", "trace", "-n", ns, mine.Metadata.Name, "--since", "5m", "--for", "1s", "-o", "table")
	if err != nil || !strings.Contains(table, mine.Metadata.Name) {
		t.Errorf("plugin with -o table: %v; want a row naming pod %s:\n%s", err, mine.Metadata.Name, table)
	}
	t.Logf("plugin with -o table:\n%s", table)

	cmd := exec.Command(c.kubectl, "oomtrace", "trace", "-n", ns, "no-such-pod")
	msg, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(msg), `pod "no-such-pod" not found in namespace "`+ns+`"`) {
		t.Errorf("plugin on a missing pod: %v, want exit status 2 naming the namespace:\n%s", err, msg)
	}
}
