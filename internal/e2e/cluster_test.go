// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cluster is the cluster scripts/e2e/run.sh brought up, as its environment
// describes it.
type cluster struct {
	kubectl    string
	agentNS    string // the DaemonSet's namespace and name
	agentDS    string
	image      string // the memhog image
	cgroupRoot string // kubelet's cgroupRoot, e.g. /oomtrace-e2e
	criSocket  string
	node       string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		kubectl:    os.Getenv("OOMTRACE_E2E_KUBECTL"),
		agentNS:    os.Getenv("OOMTRACE_E2E_AGENT_NAMESPACE"),
		agentDS:    os.Getenv("OOMTRACE_E2E_AGENT_DAEMONSET"),
		image:      os.Getenv("OOMTRACE_E2E_MEMHOG_IMAGE"),
		cgroupRoot: os.Getenv("OOMTRACE_E2E_CGROUP_ROOT"),
		criSocket:  os.Getenv("OOMTRACE_E2E_CRI_SOCKET"),
		node:       os.Getenv("OOMTRACE_E2E_NODE"),
	}
	if os.Getenv("KUBECONFIG") == "" || c.agentNS == "" || c.image == "" {
		t.Skip("skipped: no end-to-end cluster (KUBECONFIG, OOMTRACE_E2E_*): run make e2e")
	}
	if c.kubectl == "" {
		c.kubectl = "kubectl"
	}
	return c
}

// run runs kubectl with stdin and returns its stdout.
func (c *cluster) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (c *cluster) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run("", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *cluster) apply(t *testing.T, manifest string) {
	t.Helper()
	if _, err := c.run(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
}

// namespace creates a namespace for one test; it is deleted after the test
// (not waited for: pods are told apart by UID).
func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	c.must(t, "create", "namespace", name)
	t.Cleanup(func() {
		if _, err := c.run("", "delete", "namespace", name, "--wait=false"); err != nil {
			t.Log(err)
		}
	})
	return name
}

// pod is what the tests read of a pod's status.
type pod struct {
	Metadata struct {
		Name, Namespace, UID string
	}
	Status struct {
		Phase             string
		ContainerStatuses []containerStatus
	}
}

type containerStatus struct {
	Name         string
	ContainerID  string
	RestartCount int
	State        containerState
	LastState    containerState
}

type containerState struct {
	Running    *struct{}
	Terminated *struct {
		Reason      string
		ExitCode    int
		ContainerID string
	}
}

// container returns the status of the named container, if the pod has it.
func (p pod) container(name string) (containerStatus, bool) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s, true
		}
	}
	return containerStatus{}, false
}

// containerIDs are the runtime IDs (without the runtime:// prefix) the
// pod's container name has had, current and last.
func (p pod) containerIDs(name string) []string {
	s, ok := p.container(name)
	if !ok {
		return nil
	}
	var ids []string
	for _, id := range []string{s.ContainerID, terminatedID(s.State), terminatedID(s.LastState)} {
		if _, bare, ok := strings.Cut(id, "://"); ok {
			ids = append(ids, bare)
		}
	}
	return ids
}

func terminatedID(s containerState) string {
	if s.Terminated == nil {
		return ""
	}
	return s.Terminated.ContainerID
}

// pods lists the pods in ns matching selector.
func (c *cluster) pods(t *testing.T, ns, selector string) []pod {
	t.Helper()
	var list struct{ Items []pod }
	out := c.must(t, "get", "pods", "-n", ns, "-l", selector, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get pods: %v", err)
	}
	return list.Items
}

func (c *cluster) getPod(t *testing.T, ns, name string) pod {
	t.Helper()
	var p pod
	if err := json.Unmarshal([]byte(c.must(t, "get", "pod", "-n", ns, name, "-o", "json")), &p); err != nil {
		t.Fatalf("kubectl get pod: %v", err)
	}
	return p
}

// waitPod waits until a pod matching selector has a running container
// called container, and returns it.
func (c *cluster) waitPod(t *testing.T, ns, selector, container string, timeout time.Duration) pod {
	t.Helper()
	var last []pod
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last = c.pods(t, ns, selector)
		for _, p := range last {
			if s, ok := p.container(container); ok && s.State.Running != nil {
				return p
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no pod %s in %s with container %s running after %v: %+v", selector, ns, container, timeout, last)
	return pod{}
}

// event is an agent's JSON line, as much of it as the tests check.
type event struct {
	Event  string `json:"event"`
	Node   string `json:"node"`
	Victim struct {
		PID    int    `json:"pid"`
		NsPID  int    `json:"ns_pid"`
		Comm   string `json:"comm"`
		Cgroup string `json:"cgroup"`
	} `json:"victim"`
	Constraint string `json:"constraint"`
	Memcg      *struct {
		Path       string `json:"path"`
		LimitBytes int64  `json:"limit_bytes"`
		Stat       *struct {
			ShmemBytes int64 `json:"shmem_bytes"`
		} `json:"stat"`
	} `json:"memcg"`
	K8s *struct {
		Namespace   string `json:"namespace"`
		Pod         string `json:"pod"`
		Container   string `json:"container"`
		PodUID      string `json:"pod_uid"`
		ContainerID string `json:"container_id"`
		QOS         string `json:"qos"`
		Workload    *struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"workload"`
		LookupError string `json:"lookup_error"`
	} `json:"k8s"`
	TmpfsMounts []string `json:"tmpfs_mounts"`
	Diagnosis   []struct {
		Code    string `json:"code"`
		Summary string `json:"summary"`
	} `json:"diagnosis"`

	line string // as written
}

func (e event) finding(code string) (string, bool) {
	for _, d := range e.Diagnosis {
		if d.Code == code {
			return d.Summary, true
		}
	}
	return "", false
}

// parseEvents picks the events out of an agent's output: the lines that are
// JSON objects with an "event" field (its logs are JSON on stderr, which
// kubectl logs interleaves).
func parseEvents(out []byte) []event {
	var events []event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e event
		if json.Unmarshal(line, &e) != nil || e.Event == "" {
			continue
		}
		e.line = string(line)
		events = append(events, e)
	}
	return events
}

// agentPod is the name of the DaemonSet's pod on the node.
func (c *cluster) agentPod(t *testing.T) string {
	t.Helper()
	selector := c.must(t, "get", "daemonset", "-n", c.agentNS, c.agentDS, "-o",
		`go-template={{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}`)
	name := c.must(t, "get", "pods", "-n", c.agentNS, "-l", strings.TrimSuffix(selector, ","),
		"--field-selector", "status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}")
	if name == "" {
		t.Fatalf("no running pod of daemonset %s/%s", c.agentNS, c.agentDS)
	}
	return name
}

// agentEvents reads the DaemonSet pod's log, as an operator would.
func (c *cluster) agentEvents(t *testing.T) []event {
	t.Helper()
	out, err := c.run("", "logs", "-n", c.agentNS, c.agentPod(t))
	if err != nil {
		t.Logf("agent log: %v", err)
	}
	return parseEvents([]byte(out))
}

// waitEvent waits for an event of the DaemonSet's agent that match accepts.
func (c *cluster) waitEvent(t *testing.T, what string, timeout time.Duration, match func(event) bool) event {
	t.Helper()
	return waitFor(t, what, timeout, func() []event { return c.agentEvents(t) }, match)
}

func waitFor(t *testing.T, what string, timeout time.Duration, read func() []event, match func(event) bool) event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []event
	for {
		seen = read()
		for _, e := range seen {
			if match(e) {
				t.Logf("%s: %s", what, e.line)
				return e
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	var lines []string
	for _, e := range seen {
		lines = append(lines, e.line)
	}
	t.Fatalf("no event %s within %v; the agent wrote %d:\n%s", what, timeout, len(seen), strings.Join(lines, "\n"))
	return event{}
}

// ofPod matches the pod's oom_kill events.
func ofPod(uid string) func(event) bool {
	return func(e event) bool { return e.Event == "oom_kill" && e.K8s != nil && e.K8s.PodUID == uid }
}

// names is what an operator reads off an event to find the pod.
type names struct {
	namespace, pod, container, workloadKind, workloadName, qos string
}

// checkNames compares the event's k8s names with want and the pod's UID and
// container IDs.
func checkNames(t *testing.T, e event, p pod, want names) {
	t.Helper()
	k := e.K8s
	if k == nil {
		t.Fatalf("event has no k8s object: %s", e.line)
	}
	got := names{namespace: k.Namespace, pod: k.Pod, container: k.Container, qos: k.QOS}
	if k.Workload != nil {
		got.workloadKind, got.workloadName = k.Workload.Kind, k.Workload.Name
	}
	if got != want {
		t.Errorf("k8s names %+v, want %+v (lookup_error %q)", got, want, k.LookupError)
	}
	if k.PodUID != p.Metadata.UID {
		t.Errorf("k8s.pod_uid %q, want %q", k.PodUID, p.Metadata.UID)
	}
	if k.LookupError != "" {
		t.Errorf("k8s.lookup_error %q with every name known", k.LookupError)
	}
	if ids := p.containerIDs(want.container); want.container != "" && !contains(ids, k.ContainerID) {
		t.Errorf("k8s.container_id %q is none of container %s's IDs %q", k.ContainerID, want.container, ids)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// containerCgroup is the memory cgroup directory of the pod's container on
// this host (cgroup v1 or v2), as kubelet's cgroupfs driver names it.
func (c *cluster) containerCgroup(t *testing.T, p pod, container string) string {
	t.Helper()
	ids := p.containerIDs(container)
	if len(ids) == 0 {
		t.Fatalf("pod %s has no container %s yet", p.Metadata.Name, container)
	}
	for _, mem := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		matches, _ := filepath.Glob(filepath.Join(mem, c.cgroupRoot, "kubepods", "*pod"+p.Metadata.UID, ids[0]))
		matches2, _ := filepath.Glob(filepath.Join(mem, c.cgroupRoot, "kubepods", "*", "pod"+p.Metadata.UID, ids[0]))
		if m := append(matches, matches2...); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatalf("no cgroup for container %s (%s) of pod %s", container, ids[0], p.Metadata.UID)
	return ""
}

// signalHog sends SIGUSR1 to every process of the container: a memhog
// started with -on-signal starts to touch its memory (a -respawn init
// ignores it).
func (c *cluster) signalHog(t *testing.T, p pod, container string) {
	t.Helper()
	dir := c.containerCgroup(t, p, container)
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(data))
	if len(pids) == 0 {
		t.Fatalf("container %s has no processes", container)
	}
	for _, s := range pids {
		pid, _ := strconv.Atoi(s)
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(sigUSR1)
		}
	}
}

// waitLog waits for a line in the container's log.
func (c *cluster) waitLog(t *testing.T, p pod, container, line string, timeout time.Duration) {
	t.Helper()
	c.waitLogN(t, p, container, line, 1, timeout)
}

// waitLogN waits for n copies of a line in the container's log.
func (c *cluster) waitLogN(t *testing.T, p pod, container, line string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := c.run("", "logs", "-n", p.Metadata.Namespace, p.Metadata.Name, "-c", container)
		seen := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.TrimSpace(l) == line {
				seen++
			}
		}
		if seen >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s of pod %s did not print %q %d times within %v; it printed:\n%s", container, p.Metadata.Name, line, n, timeout, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
