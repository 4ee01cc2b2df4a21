// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	s.wait(t, eventTimeout)
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

// In a terminal (tmux) the plugin shows the table by default through a
// TTY, and Ctrl-C ends the session in the agent's pod: its summary comes,
// kubectl exits 0, and no `oomtrace trace` for the pod is left running on
// the node.
func TestPluginInTerminal(t *testing.T) {
	c := newCluster(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("skipped: no tmux to run a terminal in")
	}
	ns := c.namespace(t, "e2e-plugin-tty")
	mine := c.startRespawning(t, ns, "mine")
	// A server of its own, its socket in the test's directory; it gets
	// this process's environment (KUBECONFIG, PATH with the plugin).
	server := filepath.Join(t.TempDir(), "tmux.sock")
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", server}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	run("new-session", "-d", "-x", "160", "-y", "30",
		c.kubectl+" oomtrace trace -n "+ns+" "+mine.Metadata.Name+" --for 120s; echo exit=$?; sleep 120")
	t.Cleanup(func() { exec.Command(tmux, "-S", server, "kill-server").Run() })
	waitScreen := func(what string) string {
		for deadline := time.Now().Add(eventTimeout); ; time.Sleep(200 * time.Millisecond) {
			s := run("capture-pane", "-p")
			if strings.Contains(s, what) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q:\n%s", what, s)
			}
		}
	}
	waitScreen("following the agent")
	c.signalHog(t, mine, "main")
	s := waitScreen(" oom_kill ")
	if !strings.Contains(s, "TIME ") || !strings.Contains(s, mine.Metadata.Name) {
		t.Errorf("no table naming pod %s on the terminal:\n%s", mine.Metadata.Name, s)
	}
	remote := "trace --pod-uid=" + mine.Metadata.UID
	if err := exec.Command("pgrep", "-f", remote).Run(); err != nil {
		t.Fatalf("no %q running on the node during the session: %v", remote, err)
	}
	run("send-keys", "C-c")
	s = waitScreen("exit=")
	t.Logf("the terminal:\n%s", strings.TrimRight(s, "\n"))
	if !strings.Contains(s, "exit=0") || !strings.Contains(s, "1 events in") {
		t.Errorf("after Ctrl-C: want the summary and exit status 0:\n%s", s)
	}
	time.Sleep(time.Second)
	if out, err := exec.Command("pgrep", "-af", remote).Output(); err == nil {
		t.Errorf("the session still runs in the agent's pod after Ctrl-C:\n%s", out)
	}
}

// Without a terminal, Ctrl-C (SIGINT to the plugin's process group) ends
// kubectl, and the session in the agent's pod ends with it instead of
// running on until its --for.
func TestPluginInterrupted(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-plugin-int")
	mine := c.startRespawning(t, ns, "mine")
	remote := "trace --pod-uid=" + mine.Metadata.UID
	s := c.startSession(t, "oomtrace", "trace", "-n", ns, mine.Metadata.Name, "--for", "10m", "-o", "json")
	if err := exec.Command("pgrep", "-f", "^/oomtrace "+remote).Run(); err != nil {
		t.Fatalf("no %q running on the node during the session: %v", remote, err)
	}
	if err := syscall.Kill(-s.pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl oomtrace still running 30 s after SIGINT")
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command("pgrep", "-af", "^/oomtrace "+remote).Output()
		if err != nil {
			t.Logf("the session in the agent's pod ended; kubectl oomtrace: %v", s.err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session still runs in the agent's pod 15 s after Ctrl-C:\n%s", out)
		}
	}
}
