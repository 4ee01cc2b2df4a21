// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

func owned(kind, apiVersion, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: &yes}}
}

func testPod(uid, ns, name string, owners []metav1.OwnerReference, labels map[string]string, ctrs ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Namespace: ns, Name: name, OwnerReferences: owners, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status:     corev1.PodStatus{ContainerStatuses: ctrs},
	}
}

// apiFixture is an API source on a fake clientset; each change to the
// source's table is sent on changed.
type apiFixture struct {
	client  *fake.Clientset
	src     *apiSource
	r       *Resolver
	changed chan struct{}
	clock   *clock
}

func newAPIFixture(t *testing.T, pods ...*corev1.Pod) *apiFixture {
	f := &apiFixture{changed: make(chan struct{}, 64), clock: newClock()}
	f.client = fake.NewClientset()
	for _, p := range pods {
		f.client.Tracker().Add(p)
	}
	// The fake's watch does not start from the list's resource version:
	// a change made before it starts is missed, so the fixture waits
	// until it has.
	watching := make(chan struct{})
	var once sync.Once
	f.client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := f.client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		once.Do(func() { close(watching) })
		return true, w, err
	})
	f.src = newAPISource(f.client.CoreV1().Pods(metav1.NamespaceAll), "node-1", f.clock.now, zaptest.NewLogger(t), func() { f.changed <- struct{}{} })
	f.r = &Resolver{timeout: LookupTimeout, sources: []source{f.src}}
	t.Cleanup(f.r.Close)
	for range pods {
		f.wait(t)
	}
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer started no watch in 10s")
	}
	return f
}

// wait waits for the next change to reach the table.
func (f *apiFixture) wait(t *testing.T) {
	t.Helper()
	select {
	case <-f.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer delivered no change in 10s")
	}
}

func TestAPINamesAndWorkloads(t *testing.T) {
	const (
		uidDeploy, uidSts, uidBare, uidLoneRS, uidStatic = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002",
			"10000000-0000-4000-8000-000000000003", "10000000-0000-4000-8000-000000000004", "10000000-0000-4000-8000-000000000005"
		staticHash = "6b2e3c0d8f1a4e5b9c7d2a1f0e3b4c5d"
	)
	static := testPod(uidStatic, "kube-system", "etcd-node-1", owned("Node", "v1", "node-1"), nil)
	static.Annotations = map[string]string{annotationMirror: staticHash}
	f := newAPIFixture(t,
		testPod(uidDeploy, "shop", "web-7c9d8f6b5-x2x4q", owned("ReplicaSet", "apps/v1", "web-7c9d8f6b5"), map[string]string{labelPodTemplateHash: "7c9d8f6b5"},
			corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + ctrApp,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://" + ctrSide, Reason: "OOMKilled"}}}),
		testPod(uidSts, "db", "pg-0", owned("StatefulSet", "apps/v1", "pg"), nil,
			corev1.ContainerStatus{Name: "postgres", ContainerID: "cri-o://" + ctrBatch}),
		testPod(uidBare, "default", "debug", nil, nil),
		// A ReplicaSet of its own: its name does not end in the hash.
		testPod(uidLoneRS, "shop", "cache-abcde", owned("ReplicaSet", "apps/v1", "cache"), map[string]string{labelPodTemplateHash: "7c9d8f6b5"}),
		static,
	)
	for _, tc := range []struct {
		name, uid, id string
		want          Names
	}{
		{"Deployment from its ReplicaSet and the pod-template-hash", uidDeploy, ctrApp,
			Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &Workload{Kind: "Deployment", Name: "web"}}},
		{"the previous instance of a restarted container", uidDeploy, ctrSide,
			Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &Workload{Kind: "Deployment", Name: "web"}}},
		{"StatefulSet", uidSts, ctrBatch,
			Names{Namespace: "db", Pod: "pg-0", Container: "postgres", Workload: &Workload{Kind: "StatefulSet", Name: "pg"}}},
		{"bare pod: no workload", uidBare, "", Names{Namespace: "default", Pod: "debug"}},
		{"ReplicaSet of no Deployment", uidLoneRS, "", Names{Namespace: "shop", Pod: "cache-abcde", Workload: &Workload{Kind: "ReplicaSet", Name: "cache"}}},
		{"static pod by the UID kubelet knows it by, no workload", staticHash, "", Names{Namespace: "kube-system", Pod: "etcd-node-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := namesWithin(t, f.r, f.clock.now(), tc.uid, tc.id)
			if err != nil || !equalNames(n, tc.want) {
				t.Errorf("Names = %s, %v; want %s", fmtNames(n), err, fmtNames(tc.want))
			}
		})
	}
	// The watch and list are limited to this node's pods.
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		if l, ok := a.(k8stesting.ListAction); ok {
			if fs := l.GetListRestrictions().Fields.String(); fs != "spec.nodeName=node-1" {
				t.Errorf("%s pods with field selector %q, want spec.nodeName=node-1", a.GetVerb(), fs)
			}
		}
		if w, ok := a.(k8stesting.WatchAction); ok {
			if fs := w.GetWatchRestrictions().Fields.String(); fs != "spec.nodeName=node-1" {
				t.Errorf("watch pods with field selector %q, want spec.nodeName=node-1", fs)
			}
		}
	}
}

// A pod deleted right after its OOM is still named, for Retention.
func TestAPIDeletedPodRetained(t *testing.T) {
	f := newAPIFixture(t, testPod(uidWeb, "shop", "web-7c9d8f6b5-x2x4q", owned("ReplicaSet", "apps/v1", "web-7c9d8f6b5"), map[string]string{labelPodTemplateHash: "7c9d8f6b5"},
		corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + ctrApp}))
	if err := f.client.CoreV1().Pods("shop").Delete(context.Background(), "web-7c9d8f6b5-x2x4q", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.wait(t)
	f.clock.advance(Retention - time.Second)
	want := Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &Workload{Kind: "Deployment", Name: "web"}}
	if n, err := namesWithin(t, f.r, f.clock.now(), uidWeb, ctrApp); err != nil || !equalNames(n, want) {
		t.Errorf("deleted, within retention: %s, %v; want %s", fmtNames(n), err, fmtNames(want))
	}
	f.clock.advance(time.Second)
	n, err := namesWithin(t, f.r, f.clock.now(), uidWeb, ctrApp)
	if wantErr := "pod and container names: api: no pod " + uidWeb + " on node node-1"; n.Pod != "" || err == nil || err.Error() != wantErr {
		t.Errorf("deleted, past retention: %s, %v; want no names and %q", fmtNames(n), err, wantErr)
	}
}

// Names from the runtime, and the API that has not (yet) the pod: the
// names, and the workload said missing.
func TestNamesFromRuntimeWorkloadMissing(t *testing.T) {
	rt := newFakeRuntime(t)
	f := newAPIFixture(t)
	cri := newCRISource(rt.path, time.Hour, f.clock.now, zaptest.NewLogger(t))
	r := &Resolver{timeout: LookupTimeout, sources: []source{cri, f.src}}
	t.Cleanup(cri.close)
	n, err := namesWithin(t, r, f.clock.now(), uidWeb, ctrApp)
	wantErr := "workload: api: no pod " + uidWeb + " on node node-1"
	if want := (Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app"}); !equalNames(n, want) || err == nil || err.Error() != wantErr {
		t.Errorf("Names = %s, %v; want %s and %q", fmtNames(n), err, fmtNames(want), wantErr)
	}
}

func TestWorkloadOf(t *testing.T) {
	notController := testPod(uidWeb, "ns", "p", []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Rollout", Name: "canary"}}, nil)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want *Workload
	}{
		{"Deployment", testPod(uidWeb, "ns", "web-5f6d-abcde", owned("ReplicaSet", "apps/v1", "web-5f6d"), map[string]string{labelPodTemplateHash: "5f6d"}), &Workload{"Deployment", "web"}},
		{"ReplicaSet with no hash label", testPod(uidWeb, "ns", "web-5f6d-abcde", owned("ReplicaSet", "apps/v1", "web-5f6d"), nil), &Workload{"ReplicaSet", "web-5f6d"}},
		{"ReplicaSet named the hash alone", testPod(uidWeb, "ns", "x", owned("ReplicaSet", "apps/v1", "-5f6d"), map[string]string{labelPodTemplateHash: "5f6d"}), &Workload{"ReplicaSet", "-5f6d"}},
		{"DaemonSet", testPod(uidWeb, "ns", "agent-x7k2p", owned("DaemonSet", "apps/v1", "agent"), nil), &Workload{"DaemonSet", "agent"}},
		{"Job", testPod(uidWeb, "ns", "report-29384-abcde", owned("Job", "batch/v1", "report-29384"), nil), &Workload{"Job", "report-29384"}},
		{"owner not marked controller", notController, &Workload{"Rollout", "canary"}},
		{"static pod's mirror", testPod(uidWeb, "ns", "etcd-node-1", owned("Node", "v1", "node-1"), nil), nil},
		{"bare pod", testPod(uidWeb, "ns", "debug", nil, nil), nil},
	} {
		if got := workloadOf(tc.pod); (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%s: workloadOf = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func equalNames(a, b Names) bool {
	if (a.Workload == nil) != (b.Workload == nil) || a.Workload != nil && *a.Workload != *b.Workload {
		return false
	}
	a.Workload, b.Workload = nil, nil
	return a == b
}

func fmtNames(n Names) string {
	s := []string{n.Namespace, n.Pod, n.Container}
	if n.Workload != nil {
		s = append(s, n.Workload.Kind+" "+n.Workload.Name)
	}
	return "{" + strings.Join(s, " / ") + "}"
}

// The REST client the agent uses: it lists and watches this node's pods
// at the API's paths, and decodes them.
func TestRESTPods(t *testing.T) {
	pod := testPod(uidWeb, "shop", "web-7c9d8f6b5-x2x4q", owned("StatefulSet", "apps/v1", "web"), nil,
		corev1.ContainerStatus{Name: "app", ContainerID: "containerd://" + ctrApp})
	pod.APIVersion, pod.Kind = "v1", "Pod"
	added := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" || r.URL.Query().Get("fieldSelector") != "spec.nodeName=node-1" {
			t.Errorf("request %s: want /api/v1/pods?fieldSelector=spec.nodeName=node-1", r.URL)
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") != "true" {
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "PodList", "metadata": map[string]any{"resourceVersion": "1"}, "items": []any{}})
			return
		}
		pod.ResourceVersion = "2"
		json.NewEncoder(w).Encode(map[string]any{"type": "ADDED", "object": pod})
		w.(http.Flusher).Flush()
		close(added)
		<-r.Context().Done()
	}))
	defer srv.Close()
	client, err := newRESTPods(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 8)
	src := newAPISource(client, "node-1", time.Now, zaptest.NewLogger(t), func() { changed <- struct{}{} })
	defer src.close()
	for _, ch := range []chan struct{}{added, changed} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no pod from the watch in 10s")
		}
	}
	r := &Resolver{timeout: LookupTimeout, sources: []source{src}}
	want := Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &Workload{Kind: "StatefulSet", Name: "web"}}
	if n, err := r.Names(time.Now(), uidWeb, ctrApp); err != nil || !equalNames(n, want) {
		t.Errorf("Names = %s, %v; want %s", fmtNames(n), err, fmtNames(want))
	}
}

// client-go's own logs, through klog's logr interface, reach the agent's
// logger: errors as warnings with their fields, verbose lines as debug.
func TestKlogSink(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := logr.New(zapSink{log: zap.New(core).Named("client-go")})
	l.Error(errors.New("connection refused"), "Failed to watch", "reflector", "pods")
	l.Info("Caches populated")
	l.V(4).Info("detail")
	got := logs.All()
	if len(got) != 3 || got[0].Level != zapcore.WarnLevel || got[0].Message != "Failed to watch" || got[0].ContextMap()["error"] != "connection refused" ||
		got[0].ContextMap()["reflector"] != "pods" || got[1].Level != zapcore.InfoLevel || got[1].LoggerName != "client-go" || got[2].Level != zapcore.DebugLevel {
		t.Errorf("logs %+v: want the error as a warning with its fields, the info line, the detail at debug", got)
	}
	core, logs = observer.New(zapcore.InfoLevel)
	l = logr.New(zapSink{log: zap.New(core)})
	if l.V(4).Enabled() {
		t.Error("verbose lines enabled on an info logger")
	}
}

// An API that refuses the list (no RBAC for pods): the lookup says why,
// waits once at most the lookup timeout, and later lookups do not wait.
func TestAPIForbidden(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("User \"system:serviceaccount:oomtrace:oomtrace\" cannot list resource \"pods\""))
	})
	failed := make(chan struct{}, 64)
	src := newAPISource(client.CoreV1().Pods(metav1.NamespaceAll), "node-1", time.Now, zaptest.NewLogger(t), func() { failed <- struct{}{} })
	r := &Resolver{timeout: LookupTimeout, sources: []source{src}}
	defer r.Close()
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no error from the informer in 10s")
	}
	_, err := namesWithin(t, r, time.Now(), uidWeb, ctrApp)
	if err == nil || !strings.HasPrefix(err.Error(), "pod and container names: api: ") || !strings.Contains(err.Error(), "cannot list resource \"pods\"") {
		t.Errorf("err %v: want the API's refusal", err)
	}
	start := time.Now()
	namesWithin(t, r, time.Now(), uidWeb, ctrApp)
	if took := time.Since(start); took >= LookupTimeout {
		t.Errorf("a second lookup waited %s for a list that has not come in", took)
	}
}
