// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
)

const testNode = "node-1"

// fakeEvents is the Client over a fake clientset, whose actions tell the
// API writes.
type fakeEvents struct{ cs *fake.Clientset }

func (f fakeEvents) Create(ctx context.Context, ns string, ev *corev1.Event) (*corev1.Event, error) {
	return f.cs.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{})
}

func (f fakeEvents) Patch(ctx context.Context, ns, name string, data []byte) (*corev1.Event, error) {
	return f.cs.CoreV1().Events(ns).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}

// writes counts the API writes on events: creates and patches.
func (f fakeEvents) writes() (creates, patches int) {
	for _, a := range f.cs.Actions() {
		if a.GetResource().Resource != "events" {
			continue
		}
		switch a.GetVerb() {
		case "create":
			creates++
		case "patch":
			patches++
		}
	}
	return creates, patches
}

// events lists the Events in every namespace.
func (f fakeEvents) events(t *testing.T) []corev1.Event {
	t.Helper()
	l, err := f.cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func newFake() fakeEvents { return fakeEvents{fake.NewClientset()} }

func newRecorder(t *testing.T, c Client, cfg Config) *Recorder {
	t.Helper()
	cfg.Node = testNode
	r := New(c, cfg, zaptest.NewLogger(t))
	t.Cleanup(r.Close)
	return r
}

// kill is an oom_kill event in pod shop/web-1, container app, as the
// agent writes it: victim pid nsPID in the container, hostPID on the node.
func kill(comm string, hostPID, nsPID uint32, at time.Time) *event.Event {
	e := &event.Event{
		Event: event.KindOOMKill, Time: at, Node: testNode, Constraint: event.ConstraintMemcg,
		Victim: &event.Victim{PID: hostPID, TID: hostPID, NSPID: nsPID, Comm: comm, Cgroup: "/kubepods/burstable/pod1234/abcd"},
		Memcg: &event.Memcg{
			Path: "/kubepods/burstable/pod1234/abcd", LimitBytes: 32 << 20, UsageBytes: 31 << 20,
			Stat: &event.MemoryStat{AnonBytes: 30 << 20},
		},
		K8s: &event.K8s{
			Namespace: "shop", Pod: "web-1", Container: "app", PodUID: "1234",
			ContainerID: "abcd", QOS: "Burstable",
		},
		Diagnosis: []event.Finding{{Code: diagnose.ContainerLimit, Summary: "The container's own limit fired."}},
	}
	if nsPID > 1 {
		e.Diagnosis = append(e.Diagnosis, event.Finding{Code: diagnose.NonInitVictim, Summary: "not pid 1"})
	}
	return e
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func onlyEvent(t *testing.T, f fakeEvents) corev1.Event {
	t.Helper()
	evs := f.events(t)
	if len(evs) != 1 {
		t.Fatalf("%d Events, want 1: %+v", len(evs), evs)
	}
	return evs[0]
}

// The first kill of a pod's main process makes its Event at once, on the
// Pod, with what kubectl describe shows: type, reason, message, source.
func TestFirstKillCreatesAtOnce(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	r.Observe(kill("memhog", 32606, 1, at))
	eventually(t, "the Event", func() bool { return len(f.events(t)) == 1 })

	ev := onlyEvent(t, f)
	want := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web-1", UID: "1234"}
	if ev.InvolvedObject != want {
		t.Errorf("involvedObject %+v, want %+v", ev.InvolvedObject, want)
	}
	if ev.Namespace != "shop" || ev.Type != corev1.EventTypeWarning || ev.Reason != ReasonOOMKilled || ev.Count != 1 {
		t.Errorf("namespace %q type %q reason %q count %d, want shop Warning OOMKilled 1", ev.Namespace, ev.Type, ev.Reason, ev.Count)
	}
	if ev.Source.Component != "oomtrace" || ev.Source.Host != testNode || ev.ReportingController != "oomtrace" || ev.ReportingInstance != testNode {
		t.Errorf("source %+v reportingController %q reportingInstance %q, want oomtrace on %s", ev.Source, ev.ReportingController, ev.ReportingInstance, testNode)
	}
	if !ev.FirstTimestamp.Time.Equal(at) || !ev.LastTimestamp.Time.Equal(at) {
		t.Errorf("timestamps %s, %s, want the kill's time %s", ev.FirstTimestamp, ev.LastTimestamp, at)
	}
	wantMsg := "main process memhog (pid 1, 32606 on the node) in container app killed: container memory limit 32Mi reached (31 MiB used)"
	if ev.Message != wantMsg {
		t.Errorf("message\n %q, want\n %q", ev.Message, wantMsg)
	}
}

// 50 kills in one pod within a second: one Event with count 50, written
// in a handful of API calls, the folding counted.
func TestStormFoldsIntoOneEvent(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	start := time.Now()
	for i := range 50 {
		r.Observe(kill("memhog", 1000+uint32(i), 1, start.Add(time.Duration(i)*10*time.Millisecond)))
	}
	r.Close()

	ev := onlyEvent(t, f)
	if ev.Count != 50 {
		t.Errorf("count %d, want 50", ev.Count)
	}
	if !strings.Contains(ev.Message, "pid 1, 1049 on the node") {
		t.Errorf("message %q: want the last kill's (host pid 1049)", ev.Message)
	}
	if want := start.Add(490 * time.Millisecond).Truncate(time.Second); !ev.LastTimestamp.Time.Equal(want) {
		t.Errorf("lastTimestamp %s, want the last kill's, %s", ev.LastTimestamp, want)
	}
	creates, patches := f.writes()
	if creates != 1 || patches < 1 || creates+patches > 3 {
		t.Errorf("%d creates, %d patches: want 1 create and one or two patches", creates, patches)
	}
	s := r.Stats()
	if s.Kills != 50 || s.Folded != 49 || s.Creates != 1 || int(s.Patches) != patches || s.WriteErrors != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 50 kills, 49 folded, 1 create, %d patches, nothing lost", s, patches)
	}
}

// Kills that keep coming patch the Event at most once per interval, and
// its count follows them.
func TestPatchesAtMostOncePerInterval(t *testing.T) {
	f := newFake()
	const interval = 100 * time.Millisecond
	r := newRecorder(t, f, Config{PatchInterval: interval})
	const kills = 60
	start := time.Now()
	for i := range kills {
		r.Observe(kill("memhog", 1000+uint32(i), 1, time.Now()))
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, "the last count", func() bool {
		evs := f.events(t)
		return len(evs) == 1 && evs[0].Count == kills
	})
	elapsed := time.Since(start)
	r.Close()
	creates, patches := f.writes()
	if maxPatches := int(elapsed/interval) + 1; creates != 1 || patches > maxPatches || patches < 2 {
		t.Errorf("%d creates, %d patches in %s: want 1 create and 2 to %d patches", creates, patches, elapsed, maxPatches)
	}
}

// A process that is not the container's pid 1 gets its own reason, and
// its own Event next to the main process's.
func TestNonInitVictimReason(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	now := time.Now()
	r.Observe(kill("stress", 271, 12, now))
	r.Observe(kill("stress", 272, 13, now))
	r.Observe(kill("memhog", 200, 1, now))
	r.Close()

	byReason := map[string]corev1.Event{}
	for _, ev := range f.events(t) {
		byReason[ev.Reason] = ev
	}
	if len(byReason) != 2 {
		t.Fatalf("Events %+v: want one OOMKilledProcess and one OOMKilled", byReason)
	}
	ev := byReason[ReasonOOMKilledProcess]
	if ev.Count != 2 {
		t.Errorf("OOMKilledProcess count %d, want 2", ev.Count)
	}
	wantMsg := "process stress (pid 13, 272 on the node) in container app killed, not the main process: the container keeps running: container memory limit 32Mi reached (31 MiB used)"
	if ev.Message != wantMsg {
		t.Errorf("message\n %q, want\n %q", ev.Message, wantMsg)
	}
	if ev := byReason[ReasonOOMKilled]; ev.Count != 1 {
		t.Errorf("OOMKilled count %d, want 1", ev.Count)
	}
}

// A node-wide OOM: an Event on the Node (in namespace default, as
// kubelet's), and one on the pod whose process it killed.
func TestGlobalOOMOnTheNode(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	e := kill("java", 5000, 1, time.Now())
	e.Constraint, e.Memcg = event.ConstraintGlobal, nil
	e.Diagnosis = []event.Finding{{Code: diagnose.GlobalOOM, Summary: "The node ran out of memory."}}
	r.Observe(e)
	host := kill("backup", 700, 700, time.Now())
	host.Constraint, host.Memcg, host.K8s, host.Diagnosis = event.ConstraintGlobal, nil, nil, nil
	r.Observe(host)
	r.Close()

	var node, pod []corev1.Event
	for _, ev := range f.events(t) {
		switch ev.InvolvedObject.Kind {
		case "Node":
			node = append(node, ev)
		case "Pod":
			pod = append(pod, ev)
		}
	}
	if len(node) != 1 || len(pod) != 1 {
		t.Fatalf("%d Node and %d Pod Events, want 1 and 1", len(node), len(pod))
	}
	n := node[0]
	want := corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: testNode, UID: testNode}
	if n.InvolvedObject != want || n.Namespace != "default" || n.Reason != ReasonSystemOOMKill || n.Count != 2 {
		t.Errorf("Node Event %+v in %q, reason %q, count %d: want %+v in default, SystemOOMKill, 2", n.InvolvedObject, n.Namespace, n.Reason, n.Count, want)
	}
	if want := "process backup (pid 700) killed: the node ran out of memory (no cgroup limit reached)"; n.Message != want {
		t.Errorf("Node message\n %q, want\n %q", n.Message, want)
	}
	if !strings.Contains(pod[0].Message, "killed: the node ran out of memory") || pod[0].Reason != ReasonOOMKilled {
		t.Errorf("Pod Event %q %q: want OOMKilled, the node ran out of memory", pod[0].Reason, pod[0].Message)
	}
}

// The message says which limit fired and the first finding in a few words.
func TestMessagePodLimitShmem(t *testing.T) {
	e := kill("stress", 30271, 271, time.Now())
	e.Memcg = &event.Memcg{
		Path: "/kubepods/burstable/pod1234", LimitBytes: 123 << 20, UsageBytes: 123 << 20,
		Stat: &event.MemoryStat{AnonBytes: 20 << 20, ShmemBytes: 100 << 20},
	}
	e.TmpfsMounts = []string{"/cache"}
	e.Diagnosis = []event.Finding{{Code: diagnose.PodLimit}, {Code: diagnose.ShmemDominant}, {Code: diagnose.NonInitVictim}}
	reps, _ := reports(e, testNode)
	if len(reps) != 1 {
		t.Fatalf("%d reports, want 1", len(reps))
	}
	want := "process stress (pid 271, 30271 on the node) in container app killed, not the main process: the container keeps running: pod memory limit 123Mi reached (123 MiB used); 100 MiB of it is shmem (tmpfs, emptyDir with medium Memory, /dev/shm) in /cache"
	if reps[0].message != want || reps[0].reason != ReasonOOMKilledProcess {
		t.Errorf("reason %q message\n %q, want OOMKilledProcess\n %q", reps[0].reason, reps[0].message, want)
	}
}

// A kill in a pod that could not be named makes no Event (the Pod cannot
// be found by kubectl describe without its name) and is counted.
func TestUnnamedPodCounted(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	e := kill("memhog", 100, 1, time.Now())
	e.K8s.Namespace, e.K8s.Pod, e.K8s.LookupError = "", "", "no source knows the pod"
	r.Observe(e)
	r.Observe(&event.Event{Event: event.KindMemcgOOM})
	r.Close()
	if evs := f.events(t); len(evs) != 0 {
		t.Errorf("Events %+v, want none", evs)
	}
	if s := r.Stats(); s.Unnamed != 1 || s.Kills != 0 {
		t.Errorf("stats %+v, want 1 unnamed, 0 kills", s)
	}
}

// An API that fails: the failure is counted and retried later; an API
// that refuses (forbidden) is not asked again for that Event.
func TestAPIErrorsCounted(t *testing.T) {
	t.Run("unavailable", func(t *testing.T) {
		f := newFake()
		var mu sync.Mutex
		failing := true
		f.cs.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return true, nil, apierrors.NewServiceUnavailable("etcd is down")
			}
			return false, nil, nil
		})
		r := newRecorder(t, f, Config{PatchInterval: 20 * time.Millisecond})
		r.Observe(kill("memhog", 100, 1, time.Now()))
		eventually(t, "a counted write error", func() bool { return r.Stats().WriteErrors >= 1 })
		mu.Lock()
		failing = false
		mu.Unlock()
		eventually(t, "the Event after the retry", func() bool { return len(f.events(t)) == 1 })
		r.Close()
		if s := r.Stats(); s.Creates != 1 || s.Dropped != 0 {
			t.Errorf("stats %+v, want 1 create after the errors, nothing dropped", s)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		f := newFake()
		f.cs.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", errors.New("RBAC"))
		})
		r := newRecorder(t, f, Config{PatchInterval: 10 * time.Millisecond})
		r.Observe(kill("memhog", 100, 1, time.Now()))
		eventually(t, "a counted write error", func() bool { return r.Stats().WriteErrors == 1 })
		time.Sleep(100 * time.Millisecond)
		r.Close()
		if creates, _ := f.writes(); creates != 1 {
			t.Errorf("%d creates, want 1: a forbidden write is not retried", creates)
		}
		if s := r.Stats(); s.WriteErrors != 1 || s.Dropped != 1 {
			t.Errorf("stats %+v, want 1 write error, 1 dropped", s)
		}
	})
}

// A pod whose namespace is being deleted: its Event is refused, counted,
// not retried, and not logged as a failing API.
func TestNamespaceTerminating(t *testing.T) {
	f := newFake()
	f.cs.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: "unable to create new content in namespace shop because it is being terminated",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}},
		}}
	})
	core, logs := observer.New(zap.WarnLevel)
	r := New(f, Config{Node: testNode, PatchInterval: 10 * time.Millisecond}, zap.New(core))
	r.Observe(kill("memhog", 100, 1, time.Now()))
	eventually(t, "a counted write error", func() bool { return r.Stats().WriteErrors == 1 })
	time.Sleep(100 * time.Millisecond)
	r.Close()
	if creates, _ := f.writes(); creates != 1 {
		t.Errorf("%d creates, want 1: not retried", creates)
	}
	if s := r.Stats(); s.Dropped != 1 {
		t.Errorf("stats %+v, want 1 dropped", s)
	}
	for _, l := range logs.All() {
		t.Errorf("logged %s %q: want no warning for a namespace being deleted", l.Level, l.Message)
	}
}

// blockedClient is an API that does not answer until released.
type blockedClient struct {
	release chan struct{}
	calls   chan struct{}
}

func (b *blockedClient) Create(ctx context.Context, _ string, ev *corev1.Event) (*corev1.Event, error) {
	b.calls <- struct{}{}
	select {
	case <-b.release:
		return ev, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *blockedClient) Patch(ctx context.Context, _, _ string, _ []byte) (*corev1.Event, error) {
	return b.Create(ctx, "", nil)
}

// An API that hangs never holds up Observe: kills past the queue are
// counted as dropped, and Close returns within its timeout.
func TestObserveNeverBlocks(t *testing.T) {
	b := &blockedClient{release: make(chan struct{}), calls: make(chan struct{}, 100)}
	r := New(b, Config{Node: testNode, QueueSize: 16, CloseTimeout: 200 * time.Millisecond}, zap.NewNop())
	r.Observe(kill("memhog", 1, 1, time.Now()))
	<-b.calls // the writer is stuck in the API now
	start := time.Now()
	for i := range 10000 {
		r.Observe(kill("memhog", uint32(i), 1, time.Now()))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("10000 Observe calls took %s with the API hung", d)
	}
	if s := r.Stats(); s.QueueDrops < 10000-16 {
		t.Errorf("queue drops %d, want at least %d", s.QueueDrops, 10000-16)
	}
	start = time.Now()
	r.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s with the API hung, want about the close timeout", d)
	}
	close(b.release)
}

// An Event the API no longer has (expired after an hour) is made again,
// with the whole count.
func TestPatchOfAGoneEventCreatesIt(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{PatchInterval: 10 * time.Millisecond})
	r.Observe(kill("memhog", 100, 1, time.Now()))
	eventually(t, "the Event", func() bool { return len(f.events(t)) == 1 })
	ev := onlyEvent(t, f)
	if err := f.cs.CoreV1().Events(ev.Namespace).Delete(context.Background(), ev.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Observe(kill("memhog", 101, 1, time.Now()))
	r.Close()
	if ev := onlyEvent(t, f); ev.Count != 2 {
		t.Errorf("count %d, want 2", ev.Count)
	}
}

// The token bucket lets Burst writes through at once, then QPS.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(2, 3, t0)
	for i := range 3 {
		if w := b.take(t0); w != 0 {
			t.Fatalf("take %d of the burst waits %s", i, w)
		}
	}
	if w := b.take(t0); w != 500*time.Millisecond {
		t.Errorf("after the burst: wait %s, want 500ms at 2 a second", w)
	}
	if w := b.take(t0.Add(500 * time.Millisecond)); w != 0 {
		t.Errorf("500ms later: wait %s, want a token", w)
	}
	if w := b.take(t0.Add(time.Hour)); w != 0 || b.tokens != 2 {
		t.Errorf("an hour later: wait %s, %v tokens left, want 0 and burst-1", w, b.tokens)
	}
}

// Many pods at once: the bucket bounds the creates; the rest wait their
// turn and are written, none lost.
func TestWriteRateBounded(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{QPS: 20, Burst: 5})
	start := time.Now()
	for i := range 15 {
		e := kill("memhog", 100, 1, time.Now())
		e.K8s.Pod, e.K8s.PodUID = "web-"+string(rune('a'+i)), "uid-"+string(rune('a'+i))
		r.Observe(e)
	}
	eventually(t, "15 Events", func() bool { return len(f.events(t)) == 15 })
	// 5 at once, then 10 at 20 a second: about 500 ms.
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("15 creates in %s: the bucket (burst 5, 20/s) wants about 500ms", d)
	}
}

// The REST client posts Events to the core API and patches them with a
// strategic merge patch, as client-go's recorder does.
func TestRESTClient(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		got = append(got, req.Method+" "+req.URL.Path+" "+req.Header.Get("Content-Type"))
		mu.Unlock()
		var ev corev1.Event
		if req.Method == http.MethodPost {
			if err := json.Unmarshal(body, &ev); err != nil {
				t.Errorf("POST body: %v", err)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ev)
	}))
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	r := New(c, Config{Node: testNode}, zaptest.NewLogger(t))
	r.Observe(kill("memhog", 100, 1, time.Now()))
	r.Observe(kill("memhog", 101, 1, time.Now()))
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !strings.HasPrefix(got[0], "POST /api/v1/namespaces/shop/events application/json") ||
		!strings.HasPrefix(got[1], "PATCH /api/v1/namespaces/shop/events/web-1.") || !strings.HasSuffix(got[1], "application/strategic-merge-patch+json") {
		t.Errorf("requests %q: want a POST to shop's events and a strategic merge PATCH of web-1's", got)
	}
}

// The totals a scrape shows are the recorder's.
func TestCollector(t *testing.T) {
	f := newFake()
	r := newRecorder(t, f, Config{})
	for i := range 3 {
		r.Observe(kill("memhog", 100+uint32(i), 1, time.Now()))
	}
	r.Close()
	want := `
# HELP oomtrace_kube_events_api_writes_total Kubernetes Event writes the API accepted, by verb: create, patch.
# TYPE oomtrace_kube_events_api_writes_total counter
oomtrace_kube_events_api_writes_total{verb="create"} 1
oomtrace_kube_events_api_writes_total{verb="patch"} 1
# HELP oomtrace_kube_events_folded_total OOM kills counted into a Kubernetes Event that an earlier kill made, instead of an Event of their own.
# TYPE oomtrace_kube_events_folded_total counter
oomtrace_kube_events_folded_total 2
# HELP oomtrace_kube_events_kills_total OOM kills that made or joined a Kubernetes Event (a node-wide OOM's kill in a pod counts for the Pod and the Node).
# TYPE oomtrace_kube_events_kills_total counter
oomtrace_kube_events_kills_total 3
`
	if err := promtestutil.CollectAndCompare(r.Collector(), strings.NewReader(want),
		"oomtrace_kube_events_api_writes_total", "oomtrace_kube_events_folded_total", "oomtrace_kube_events_kills_total"); err != nil {
		t.Error(err)
	}
	if n := promtestutil.CollectAndCount(r.Collector()); n != 8 {
		t.Errorf("%d series, want 8", n)
	}
	if problems, err := promtestutil.CollectAndLint(r.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
