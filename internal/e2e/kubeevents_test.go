// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// kubeEvent is a Kubernetes Event, as much of it as the tests check.
type kubeEvent struct {
	Metadata struct {
		Name, Namespace string
	}
	InvolvedObject struct {
		Kind, Namespace, Name, UID string
	}
	Reason, Message, Type string
	Count                 int
	Source                struct {
		Component, Host string
	}
	ReportingComponent string // reportingController in Go
	ReportingInstance  string
	FirstTimestamp     time.Time
	LastTimestamp      time.Time
}

// podEvents are oomtrace's Events on the pod uid in ns.
func (c *cluster) podEvents(t *testing.T, ns, uid string) []kubeEvent {
	t.Helper()
	var list struct{ Items []kubeEvent }
	out := c.must(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.uid="+uid, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get events: %v", err)
	}
	var ours []kubeEvent
	for _, ev := range list.Items {
		if ev.Source.Component == "oomtrace" {
			ours = append(ours, ev)
		}
	}
	return ours
}

// waitKubeEvent waits for one of oomtrace's Events on the pod that match
// accepts.
func (c *cluster) waitKubeEvent(t *testing.T, what string, p pod, timeout time.Duration, match func(kubeEvent) bool) kubeEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := c.podEvents(t, p.Metadata.Namespace, p.Metadata.UID)
		for _, ev := range evs {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Event %s on pod %s within %v; oomtrace's Events there: %+v", what, p.Metadata.Name, timeout, evs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// describeEvents is the Events part of kubectl describe pod, as a user
// reads it.
func (c *cluster) describeEvents(t *testing.T, p pod) string {
	t.Helper()
	out := c.must(t, "describe", "pod", "-n", p.Metadata.Namespace, p.Metadata.Name)
	_, events, ok := strings.Cut(out, "\nEvents:")
	if !ok {
		t.Fatalf("kubectl describe pod shows no Events:\n%s", out)
	}
	return "Events:" + events
}

// checkDescribed: kubectl describe pod shows the Event as a line with its
// type, reason, source and message (the message of the latest kill: its
// numbers may have changed since ev was read).
func (c *cluster) checkDescribed(t *testing.T, p pod, ev kubeEvent) {
	t.Helper()
	events := c.describeEvents(t, p)
	t.Logf("kubectl describe pod -n %s %s:\n%s", p.Metadata.Namespace, p.Metadata.Name, events)
	numbers := regexp.MustCompile(`[0-9.]+`)
	msg := numbers.ReplaceAllString(ev.Message, "N")
	for _, line := range strings.Split(events, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "Warning" && f[1] == ev.Reason && strings.Contains(line, " oomtrace ") &&
			strings.HasSuffix(numbers.ReplaceAllString(line, "N"), msg) {
			return
		}
	}
	t.Errorf("kubectl describe pod shows no Warning %s from oomtrace with message %q", ev.Reason, ev.Message)
}

// checkEventFields: what every Event of oomtrace on a pod has.
func checkEventFields(t *testing.T, ev kubeEvent, p pod, node string) {
	t.Helper()
	io := ev.InvolvedObject
	if io.Kind != "Pod" || io.Namespace != p.Metadata.Namespace || io.Name != p.Metadata.Name || io.UID != p.Metadata.UID {
		t.Errorf("involvedObject %+v, want pod %s/%s %s", io, p.Metadata.Namespace, p.Metadata.Name, p.Metadata.UID)
	}
	if ev.Type != "Warning" || ev.ReportingComponent != "oomtrace" || ev.ReportingInstance != node || ev.Source.Host != node {
		t.Errorf("type %q reportingController %q reportingInstance %q source %+v, want Warning from oomtrace on %s",
			ev.Type, ev.ReportingComponent, ev.ReportingInstance, ev.Source, node)
	}
}

// A container's main process over its limit: the Pod gets an Event
// OOMKilled that says who died and which limit fired.
func TestKubeEventOOMKilled(t *testing.T) {
	c := newCluster(t)
	p, line := c.startOverLimit(t, c.namespace(t, "e2e-event"))
	ev := c.waitKubeEvent(t, "OOMKilled", p, 30*time.Second, func(ev kubeEvent) bool { return ev.Reason == "OOMKilled" })
	checkEventFields(t, ev, p, line.Node)
	want := regexp.MustCompile(`^main process memhog \(pid 1, \d+ on the node\) in container hog killed: container memory limit 32Mi reached \([0-9.]+ MiB used\)$`)
	if !want.MatchString(ev.Message) {
		t.Errorf("message %q, want it to match %s", ev.Message, want)
	}
	c.checkDescribed(t, p, ev)
}

// A child process killed while the container's pid 1 lives on: its own
// reason, which says the container keeps running, and no OOMKilled.
func TestKubeEventNonPID1(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-event-child")
	p := c.startRespawning(t, ns, "worker")
	c.signalHog(t, p, "main")
	line := c.waitEvent(t, "for pod worker's child's OOM", eventTimeout, ofPod(p.Metadata.UID))
	ev := c.waitKubeEvent(t, "OOMKilledProcess", p, 30*time.Second, func(ev kubeEvent) bool { return ev.Reason == "OOMKilledProcess" })
	checkEventFields(t, ev, p, line.Node)
	want := fmt.Sprintf("process %s (pid %d, %d on the node) in container main killed, not the main process: the container keeps running: container memory limit 48Mi reached (",
		line.Victim.Comm, line.Victim.NsPID, line.Victim.PID)
	if !strings.HasPrefix(ev.Message, want) {
		t.Errorf("message %q, want it to start %q", ev.Message, want)
	}
	for _, other := range c.podEvents(t, ns, p.Metadata.UID) {
		if other.Reason == "OOMKilled" {
			t.Errorf("an OOMKilled Event %q for a process that is not the container's main one", other.Message)
		}
	}
	c.checkDescribed(t, p, ev)
}

// 50 kills in one pod within seconds (an init that runs 50 children, each
// killed at the container's limit): one Event with count 50, written in a
// handful of API requests (a create, a patch per 5 s of the storm, the
// last count), which the agent logs one by one.
func TestKubeEventStormFolds(t *testing.T) {
	const kills = 50
	c := newCluster(t)
	ns := c.namespace(t, "e2e-event-storm")
	c.apply(t, deployment(ns, "storm", c.image, podSpec{hogs: []hog{
		{name: "main", args: []string{"hog", "-init", "-respawn", "-respawn-max", fmt.Sprint(kills), "-mib", "32"}, request: "8Mi", limit: "16Mi"},
	}}))
	p := c.waitPod(t, ns, "app=storm", "main", eventTimeout)
	c.waitLog(t, p, "main", fmt.Sprintf("memhog: %d children run", kills), 2*time.Minute)
	c.waitLogN(t, p, "main", "memhog: child exited 137", kills, 5*time.Second)

	// The agent's lines: one per kill, as the container counted them.
	var lines []event
	for _, e := range c.agentEvents(t) {
		if ofPod(p.Metadata.UID)(e) {
			lines = append(lines, e)
		}
	}
	if len(lines) != kills {
		t.Fatalf("the agent wrote %d oom_kill lines for pod storm, want %d", len(lines), kills)
	}

	ev := c.waitKubeEvent(t, fmt.Sprintf("with count %d", kills), p, 30*time.Second, func(ev kubeEvent) bool { return ev.Count >= kills })
	if ev.Count != kills || ev.Reason != "OOMKilledProcess" {
		t.Errorf("Event %s count %d, want OOMKilledProcess %d", ev.Reason, ev.Count, kills)
	}
	if evs := c.podEvents(t, ns, p.Metadata.UID); len(evs) != 1 {
		t.Errorf("%d Events of oomtrace on pod storm, want 1: %+v", len(evs), evs)
	}
	checkEventFields(t, ev, p, lines[0].Node)
	span := ev.LastTimestamp.Sub(ev.FirstTimestamp)
	creates, patches := c.agentEventWrites(t, ev.Metadata.Name)
	t.Logf("%d kills over %s: Event %s count %d, %d creates and %d patches", kills, span, ev.Metadata.Name, ev.Count, creates, patches)
	if maxPatches := 1 + int(span/patchInterval); creates != 1 || patches > maxPatches {
		t.Errorf("%d creates and %d patches of the Event in a storm of %s, want 1 create and at most %d patches (one per %s, and the last)",
			creates, patches, span, maxPatches, patchInterval)
	}
	// The agent's metrics hold the same totals (every test's kills so far).
	_, m := scrapeAgent(t, c.metricsTarget(t))
	if folded, writes := m.Sum("oomtrace_kube_events_folded_total"), m.Sum("oomtrace_kube_events_api_writes_total"); folded < kills-1 || writes < float64(creates+patches) {
		t.Errorf("metrics: oomtrace_kube_events_folded_total %v, api_writes_total %v; want at least this storm's %d and %d", folded, writes, kills-1, creates+patches)
	}
	c.checkDescribed(t, p, ev)
	if d := c.describeEvents(t, p); !strings.Contains(d, fmt.Sprintf("(x%d over ", kills)) {
		t.Errorf("kubectl describe pod does not show the count x%d", kills)
	}
}

// patchInterval is how often the agent patches an Event's count
// (kubeevents.DefaultPatchInterval).
const patchInterval = 5 * time.Second

// agentEventWrites counts the agent's API writes of the Event name, from
// the log line it writes for each.
func (c *cluster) agentEventWrites(t *testing.T, name string) (creates, patches int) {
	t.Helper()
	out, err := c.run("", "logs", "-n", c.agentNS, c.agentPod(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct{ Msg, Name string }
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Name != name {
			continue
		}
		switch l.Msg {
		case "kubernetes event created":
			creates++
		case "kubernetes event patched":
			patches++
		}
	}
	return creates, patches
}
