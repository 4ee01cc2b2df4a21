// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is written by kubectl's output copier while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// traceSession is `oomtrace trace` run in the agent's pod by kubectl exec.
type traceSession struct {
	stdout, stderr syncBuffer
	exited         chan struct{}
	err            error
	pid            int // kubectl's, which leads a process group of its own
}

// startTrace runs a trace session in the agent's pod and returns once it
// follows the agent's stream.
func (c *cluster) startTrace(t *testing.T, agentPod string, args ...string) *traceSession {
	t.Helper()
	return c.startSession(t, append([]string{"exec", "-n", c.agentNS, agentPod, "--", "/oomtrace", "trace"}, args...)...)
}

// startSession runs kubectl with args, a command that runs a trace
// session, and returns once the session follows the agent's stream.
func (c *cluster) startSession(t *testing.T, kubectlArgs ...string) *traceSession {
	t.Helper()
	s := &traceSession{exited: make(chan struct{})}
	cmd := exec.Command(c.kubectl, kubectlArgs...)
	cmd.Stdout, cmd.Stderr = &s.stdout, &s.stderr
	// A group of its own, so a test can Ctrl-C it and its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.stderr.String(), "following the agent") {
		select {
		case <-s.exited:
			t.Fatalf("trace session ended before it followed the agent (%v); stderr:\n%s", s.err, s.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace session not following the agent after 30 s; stderr:\n%s", s.stderr.String())
		}
	}
	return s
}

// wait waits for the session to end by itself and fails the test unless
// it exited 0.
func (s *traceSession) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		t.Fatalf("trace session still running after %v; stderr:\n%s", within, s.stderr.String())
	}
	if s.err != nil {
		t.Fatalf("trace session: %v; stderr:\n%s", s.err, s.stderr.String())
	}
}

// An operator runs a trace session in the node's agent pod: it shows the
// named pod's kill and not another pod's that came first, ends after
// --count 1 with status 0, and a session started afterwards with
// --since 5m gets the same kill, byte for byte.
func TestTraceInAgentPod(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-trace")
	mine := c.startRespawning(t, ns, "mine")
	other := c.startRespawning(t, ns, "other")
	agent := c.agentPod(t)
	s := c.startTrace(t, agent, "--namespace", ns, "--pod", mine.Metadata.Name, "--events", "oom_kill", "--count", "1", "--for", "120s")

	c.signalHog(t, other, "main")
	c.waitEvent(t, "for pod other's OOM", eventTimeout, ofPod(other.Metadata.UID))
	c.signalHog(t, mine, "main")
	s.wait(t, eventTimeout)
	t.Logf("session's summary:\n%s", s.stderr.String())
	live := parseEvents([]byte(s.stdout.String()))
	if len(live) != 1 || live[0].K8s == nil || live[0].K8s.Pod != mine.Metadata.Name || live[0].K8s.Namespace != ns {
		t.Fatalf("session showed %d events, want exactly pod %s/%s's kill:\n%s", len(live), ns, mine.Metadata.Name, s.stdout.String())
	}

	out := c.must(t, "exec", "-n", c.agentNS, agent, "--", "/oomtrace", "trace",
		"--namespace", ns, "--pod", mine.Metadata.Name, "--events", "oom_kill", "--since", "5m", "--count", "1", "--for", "30s")
	replayed := parseEvents([]byte(out))
	if len(replayed) != 1 || replayed[0].line != live[0].line {
		t.Errorf("--since 5m session showed %d events, want the kill from before it started:\n got %s\nwant %s", len(replayed), out, live[0].line)
	}
}
