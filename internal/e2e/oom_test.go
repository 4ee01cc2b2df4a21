// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// eventTimeout bounds the wait for an event: a pod starts in seconds here,
// and the agent writes an OOM within milliseconds of it.
const eventTimeout = 90 * time.Second

// A Deployment's container goes over its memory limit: the agent's line in
// `kubectl logs` names the pod, its container and its Deployment.
func TestContainerOverItsLimit(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-limit")
	p, e := c.startOverLimit(t, ns)
	p = c.podWithContainerID(t, p, "hog", e.K8s.ContainerID)
	checkNames(t, e, p, names{namespace: ns, pod: p.Metadata.Name, container: "hog",
		workloadKind: "Deployment", workloadName: "web", qos: "Burstable"})
	if e.Victim.NsPID != 1 {
		t.Errorf("victim ns_pid %d, want 1: the container's own process", e.Victim.NsPID)
	}
	if _, ok := e.finding("container_limit"); !ok {
		t.Errorf("diagnosis %+v lacks container_limit", e.Diagnosis)
	}
}

// A container's child process is OOM-killed while its pid 1 lives on:
// Kubernetes says nothing (no OOMKilled, no restart), the agent names the
// container and says the victim was not its init.
func TestChildKilledInitLivesOn(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-child")
	p := c.startRespawning(t, ns, "worker")
	c.signalHog(t, p, "main")
	e := c.waitEvent(t, "for pod worker's child's OOM", eventTimeout, ofPod(p.Metadata.UID))
	checkNames(t, e, p, names{namespace: ns, pod: p.Metadata.Name, container: "main",
		workloadKind: "Deployment", workloadName: "worker", qos: "Burstable"})
	if e.Victim.NsPID == 1 {
		t.Errorf("victim ns_pid 1: want the child")
	}
	if _, ok := e.finding("non_init_victim"); !ok {
		t.Errorf("diagnosis %+v lacks non_init_victim", e.Diagnosis)
	}
	// What Kubernetes shows: the container still running, never restarted.
	p = c.getPod(t, ns, p.Metadata.Name)
	if s, _ := p.container("main"); s.RestartCount != 0 || s.State.Running == nil {
		t.Errorf("container main: restarts %d, state %+v; want running, never restarted", s.RestartCount, s.State)
	}
}

// A pod OOM-killed and deleted at once: the event, written before the
// deletion, carries its names; the runtime and the API forgetting the pod
// afterwards does not matter.
func TestPodDeletedAfterOOM(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-deleted")
	c.apply(t, barePod(ns, "short", c.image, podSpec{restartPolicy: "Never", hogs: []hog{
		{name: "hog", args: []string{"hog", "-mib", "64"}, request: "16Mi", limit: "32Mi"},
	}}))
	var p pod
	deadline := time.Now().Add(eventTimeout)
	for {
		p = c.getPod(t, ns, "short")
		if s, ok := p.container("hog"); ok && s.State.Terminated != nil {
			if s.State.Terminated.Reason != "OOMKilled" {
				t.Fatalf("container hog terminated with %+v, want OOMKilled", *s.State.Terminated)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod short not OOM-killed within %v: %+v", eventTimeout, p.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.must(t, "delete", "pod", "-n", ns, "short", "--grace-period=0", "--force", "--wait=true")
	e := c.waitEvent(t, "for deleted pod short's OOM", eventTimeout, ofPod(p.Metadata.UID))
	checkNames(t, e, p, names{namespace: ns, pod: "short", container: "hog", qos: "Burstable"})
	if e.K8s.Workload != nil {
		t.Errorf("k8s.workload %+v for a pod without a controller", *e.K8s.Workload)
	}
}

// Seed 004 on a real node: a pod-level memory limit, one container filling
// a memory-backed emptyDir, the other allocating. The pod's limit fires, not
// a container's, and the diagnosis points at the emptyDir.
func TestPodLevelLimitShmem(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-podlimit")
	const cacheDir = "/cache"
	c.apply(t, deployment(ns, "seed004", c.image, podSpec{
		podRequest: "64Mi", podLimit: "128Mi",
		memoryVolumes: []string{"cache"},
		hogs: []hog{
			{name: "writer", args: []string{"hog", "-write", cacheDir + "/data", "-write-mib", "64", "-hold"},
				mounts: map[string]string{"cache": cacheDir}},
			{name: "app", args: []string{"hog", "-on-signal", "-paced", "-mib", "120"}},
		},
	}))
	p := c.waitPod(t, ns, "app=seed004", "app", eventTimeout)
	c.waitLog(t, p, "writer", "ready", 30*time.Second)
	c.waitLog(t, p, "app", "waiting", 30*time.Second)
	c.signalHog(t, p, "app")
	e := c.waitEvent(t, "for pod seed004's OOM", eventTimeout, ofPod(p.Metadata.UID))
	p = c.getPod(t, ns, p.Metadata.Name)
	checkNames(t, e, p, names{namespace: ns, pod: p.Metadata.Name, container: "app",
		workloadKind: "Deployment", workloadName: "seed004", qos: "Burstable"})
	if _, ok := e.finding("pod_limit"); !ok {
		t.Errorf("diagnosis %+v lacks pod_limit", e.Diagnosis)
	}
	if e.Memcg == nil || !strings.HasSuffix(e.Memcg.Path, "pod"+p.Metadata.UID) {
		t.Errorf("memcg %+v: want the pod's cgroup", e.Memcg)
	}
	summary, ok := e.finding("shmem_dominant")
	if !ok {
		t.Fatalf("diagnosis %+v lacks shmem_dominant", e.Diagnosis)
	}
	if !contains(e.TmpfsMounts, cacheDir) {
		t.Errorf("tmpfs_mounts %q lack the emptyDir %s", e.TmpfsMounts, cacheDir)
	}
	if !strings.Contains(summary, cacheDir) {
		t.Errorf("shmem_dominant %q does not name the emptyDir %s", summary, cacheDir)
	}
}

// startOverLimit runs a Deployment "web" whose container "hog" touches 64
// MiB under a 32 MiB limit, and returns its pod and the agent's line of
// the first OOM kill.
func (c *cluster) startOverLimit(t *testing.T, ns string) (pod, event) {
	t.Helper()
	c.apply(t, deployment(ns, "web", c.image, podSpec{hogs: []hog{
		{name: "hog", args: []string{"hog", "-mib", "64"}, request: "16Mi", limit: "32Mi"},
	}}))
	p := c.waitPods(t, ns, "app=web")
	return p, c.waitEvent(t, "for pod web's OOM", eventTimeout, ofPod(p.Metadata.UID))
}

// startRespawning runs a Deployment whose container "main" has an init
// that outlives its children, each an OOM on signal (signalHog) in the
// container's 48 MiB, and returns its pod once a child waits.
func (c *cluster) startRespawning(t *testing.T, ns, name string) pod {
	t.Helper()
	c.apply(t, deployment(ns, name, c.image, podSpec{hogs: []hog{
		{name: "main", args: []string{"hog", "-init", "-respawn", "-on-signal", "-mib", "64"}, request: "16Mi", limit: "48Mi"},
	}}))
	p := c.waitPod(t, ns, "app="+name, "main", eventTimeout)
	c.waitLog(t, p, "main", "waiting", 30*time.Second)
	return p
}

// podWithContainerID reads the pod again until its status names id among
// the container's IDs, for at most 30 s: kubelet reports a container that
// OOMs as it starts a little after the agent's line.
func (c *cluster) podWithContainerID(t *testing.T, p pod, container, id string) pod {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p = c.getPod(t, p.Metadata.Namespace, p.Metadata.Name)
		if contains(p.containerIDs(container), id) || time.Now().After(deadline) {
			return p
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitPods waits for a pod matching selector to exist and returns it.
func (c *cluster) waitPods(t *testing.T, ns, selector string) pod {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		if ps := c.pods(t, ns, selector); len(ps) > 0 && ps[0].Metadata.UID != "" {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod %s in %s after %v", selector, ns, eventTimeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
