// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The container runtime stops for a while. Containers keep running and
// OOMs keep happening; the DaemonSet's agent still writes each one, named
// (the API still knows the pod). Its stdout reaches the log file through
// the runtime (containerd writes it), so those lines show in kubectl logs
// once the runtime is back. An agent that knows the node only through
// the runtime, started during the outage, writes its events with
// k8s.lookup_error saying why, and names them once the runtime is back.
func TestRuntimeStopped(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-runtime")
	p := c.startRespawning(t, ns, "steady")
	agentBin := buildAgent(t)
	want := names{namespace: ns, pod: p.Metadata.Name, container: "main",
		workloadKind: "Deployment", workloadName: "steady", qos: "Burstable"}

	c.runtime(t, "runtime-stop")
	stopped := true
	t.Cleanup(func() {
		if stopped {
			c.runtime(t, "runtime-start")
		}
	})
	host := startHostAgent(t, agentBin, c.criSocket, c.node)
	c.signalHog(t, p, "main")
	during := waitFor(t, "from the runtime-only agent during the outage", eventTimeout, host.events, ofPod(p.Metadata.UID))
	if during.K8s.LookupError == "" || !strings.Contains(during.K8s.LookupError, "cri") {
		t.Errorf("k8s.lookup_error %q: want why the runtime could not name the pod", during.K8s.LookupError)
	}
	if during.K8s.Pod != "" || during.K8s.Container != "" {
		t.Errorf("names %q/%q with the runtime stopped and no API: from where?", during.K8s.Pod, during.K8s.Container)
	}

	c.runtime(t, "runtime-start")
	stopped = false
	c.waitLogN(t, p, "main", "waiting", 2, 30*time.Second) // the respawned child
	before := len(host.events())
	c.signalHog(t, p, "main")
	after := waitFor(t, "from the runtime-only agent after the outage", eventTimeout,
		func() []event { return host.events()[before:] }, ofPod(p.Metadata.UID))
	checkNames(t, after, p, names{namespace: ns, pod: p.Metadata.Name, container: "main", qos: "Burstable"})

	// The DaemonSet's agent wrote both, named.
	var ds []event
	waitFor(t, "from the DaemonSet for both OOMs", eventTimeout, func() []event {
		ds = nil
		for _, e := range c.agentEvents(t) {
			if ofPod(p.Metadata.UID)(e) {
				ds = append(ds, e)
			}
		}
		return ds
	}, func(event) bool { return len(ds) >= 2 })
	for _, e := range ds {
		checkNames(t, e, p, want)
	}
}

// runtime stops or starts the cluster's containerd (cluster.sh).
func (c *cluster) runtime(t *testing.T, cmd string) {
	t.Helper()
	out, err := exec.Command("bash", "../../scripts/e2e/cluster.sh", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s", cmd, err, out)
	}
}

// buildAgent returns the agent binary for this host: the image's
// ($OOMTRACE_E2E_AGENT_BIN, from make image), else one built here.
func buildAgent(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("OOMTRACE_E2E_AGENT_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "oomtrace")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/oomtrace")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// hostAgent is an agent run on the node as a plain process, with the
// runtime as its only source of names.
type hostAgent struct {
	mu     sync.Mutex
	stdout bytes.Buffer
}

func (a *hostAgent) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stdout.Write(p)
}

func (a *hostAgent) events() []event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return parseEvents(a.stdout.Bytes())
}

func startHostAgent(t *testing.T, bin, criSocket, node string) *hostAgent {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	stderr, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	a := &hostAgent{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "agent", "--node-name", node, "--ready-file", ready,
		"--cri-endpoint", "unix://"+criSocket, "--kube-api", "off", "--metrics-addr=", "--socket=")
	cmd.Stdout, cmd.Stderr = a, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(stderr.Name())
			t.Logf("host agent's log:\n%s", log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return a
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(stderr.Name())
			t.Fatalf("host agent exited before it was ready:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(stderr.Name())
			t.Fatalf("host agent not ready within 60s:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
