// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	uidWeb   = "bc001ffa-68fc-11e9-92d7-5ef9efd9374c"
	uidBatch = "5d7f9b1e-0c2a-4b6e-9f3d-7a8c1e2b4d6f"
	sbWeb    = "1111111111111111111111111111111111111111111111111111111111111111"
	ctrApp   = "a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672"
	ctrSide  = "b3fe78d74f939eb4950ca0a617bf3c47c5ebd6c513b68a3092daced18c34f783"
	ctrBatch = "c40f89e85a04afc5a61db1b728c04d58d6fce7d624c79b41a3ebdfe29d45a894"
)

// fakeRuntime is a container runtime's CRI service with the lists kubelet
// would have made, on a unix socket.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu         sync.Mutex
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	lists      atomic.Int32  // ListContainers calls
	hang       chan struct{} // when not nil, lists wait for it to close
	srv        *grpc.Server
	path       string
}

func (f *fakeRuntime) ListPodSandbox(ctx context.Context, _ *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.ListPodSandboxResponse{Items: append([]*runtimeapi.PodSandbox(nil), f.sandboxes...)}, nil
}

func (f *fakeRuntime) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.lists.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.ListContainersResponse{Containers: append([]*runtimeapi.Container(nil), f.containers...)}, nil
}

func podLabels(uid, ns, name string) map[string]string {
	return map[string]string{labelPodUID: uid, labelPodNamespace: ns, labelPodName: name}
}

func (f *fakeRuntime) addSandbox(id, uid, ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes = append(f.sandboxes, &runtimeapi.PodSandbox{Id: id, Labels: podLabels(uid, ns, name)})
}

func (f *fakeRuntime) addContainer(id, uid, ns, pod, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := podLabels(uid, ns, pod)
	l[labelContainerName] = name
	f.containers = append(f.containers, &runtimeapi.Container{Id: id, PodSandboxId: sbWeb, Labels: l})
}

func (f *fakeRuntime) removeContainer(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.containers {
		if c.Id == id {
			f.containers = append(f.containers[:i], f.containers[i+1:]...)
			return
		}
	}
}

// serve starts answering on f.path.
func (f *fakeRuntime) serve(t testing.TB) {
	t.Helper()
	os.Remove(f.path) // a stopped runtime's
	l, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(f.srv, f)
	go f.srv.Serve(l)
}

// stopRefusing stops the runtime and leaves its socket behind, as a
// stopped runtime does: a dial is refused.
func (f *fakeRuntime) stopRefusing(t *testing.T) {
	t.Helper()
	f.srv.Stop()
	l, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

// newFakeRuntime starts a runtime with one pod: web, a sandbox and two
// containers, plus a container no kubelet made.
func newFakeRuntime(t *testing.T) *fakeRuntime {
	dir, err := os.MkdirTemp("", "cri") // t.TempDir() can exceed a socket path's 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeRuntime{path: filepath.Join(dir, "cri.sock")}
	f.addSandbox(sbWeb, uidWeb, "shop", "web-7c9d8f6b5-x2x4q")
	f.addContainer(ctrApp, uidWeb, "shop", "web-7c9d8f6b5-x2x4q", "app")
	f.addContainer(ctrSide, uidWeb, "shop", "web-7c9d8f6b5-x2x4q", "sidecar")
	f.containers = append(f.containers, &runtimeapi.Container{Id: strings.Repeat("d", 64), Labels: map[string]string{"made-by": "ctr"}})
	f.serve(t)
	t.Cleanup(func() {
		f.mu.Lock()
		if f.hang != nil {
			close(f.hang)
			f.hang = nil
		}
		f.mu.Unlock()
		f.srv.Stop()
	})
	return f
}

// clock is a settable time.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// newCRIResolver resolves from the runtime at path alone. Its poll
// interval is an hour: every list in a test is one a lookup asked for.
func newCRIResolver(t *testing.T, path string, c *clock) *Resolver {
	r := &Resolver{timeout: LookupTimeout, sources: []source{newCRISource(path, time.Hour, c.now, zaptest.NewLogger(t))}}
	t.Cleanup(r.Close)
	return r
}

// namesWithin looks names up and fails the test if the lookup takes
// longer than the lookup timeout and a margin for a loaded machine. It
// may run in any goroutine.
func namesWithin(t *testing.T, r *Resolver, at time.Time, uid, id string) (Names, error) {
	t.Helper()
	type result struct {
		n   Names
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.Names(at, uid, id)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return res.n, res.err
	case <-time.After(LookupTimeout + 500*time.Millisecond):
		t.Errorf("Names(%s, %s) did not return within the lookup timeout %s", uid, short(id), LookupTimeout)
		return Names{}, errors.New("timed out")
	}
}

func TestCRINamesFromLabels(t *testing.T) {
	rt := newFakeRuntime(t)
	c := newClock()
	r := newCRIResolver(t, rt.path, c)
	for _, tc := range []struct {
		id   string
		want Names
	}{
		{ctrApp, Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app"}},
		{ctrSide, Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "sidecar"}},
		// The sandbox and the pod's own cgroup: the pod's names, no container.
		{sbWeb, Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q"}},
		{"", Names{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q"}},
	} {
		n, err := namesWithin(t, r, c.now(), uidWeb, tc.id)
		if err != nil || n != tc.want {
			t.Errorf("Names(%s) = %+v, %v; want %+v", short(tc.id), n, err, tc.want)
		}
	}
	// A container of the right pod UID the runtime does not list, and a
	// container kubelet did not make: the pod's names, and why not the
	// container's.
	for _, id := range []string{strings.Repeat("e", 64), strings.Repeat("d", 64)} {
		n, err := namesWithin(t, r, c.now(), uidWeb, id)
		want := "container name: cri: the runtime has no container " + id[:12] + " in pod " + uidWeb
		if n.Pod != "web-7c9d8f6b5-x2x4q" || n.Container != "" || err == nil || err.Error() != want {
			t.Errorf("Names(%s) = %+v, %v; want the pod's names and %q", id[:12], n, err, want)
		}
	}
	if got := rt.lists.Load(); got != 1 {
		t.Errorf("the runtime was listed %d times, want once: lookups after a list that started later than the event do not list again", got)
	}
}

// A container that OOMs before the next poll is found by one list on
// the miss, shared by every lookup that missed at once.
func TestCRIMissListsOnce(t *testing.T) {
	rt := newFakeRuntime(t)
	c := newClock()
	r := newCRIResolver(t, rt.path, c)
	if _, err := namesWithin(t, r, c.now(), uidWeb, ctrApp); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Second)
	rt.addSandbox(strings.Repeat("2", 64), uidBatch, "jobs", "report-29384-abcde")
	rt.addContainer(ctrBatch, uidBatch, "jobs", "report-29384-abcde", "report")
	before := rt.lists.Load()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := namesWithin(t, r, c.now(), uidBatch, ctrBatch)
			if want := (Names{Namespace: "jobs", Pod: "report-29384-abcde", Container: "report"}); err != nil || n != want {
				t.Errorf("new container: %+v, %v; want %+v", n, err, want)
			}
		}()
	}
	wg.Wait()
	if got := rt.lists.Load() - before; got != 1 {
		t.Errorf("8 lookups that missed at once listed the runtime %d times, want 1", got)
	}
}

// A container gone from the runtime is still named for Retention.
func TestCRIRetention(t *testing.T) {
	rt := newFakeRuntime(t)
	c := newClock()
	r := newCRIResolver(t, rt.path, c)
	if _, err := namesWithin(t, r, c.now(), uidWeb, ctrApp); err != nil {
		t.Fatal(err)
	}
	rt.removeContainer(ctrApp)
	c.advance(time.Second)
	// A lookup of something unknown lists the runtime again: app is gone.
	namesWithin(t, r, c.now(), uidBatch, ctrBatch)
	c.advance(Retention - 2*time.Second)
	if n, err := namesWithin(t, r, c.now().Add(-Retention/2), uidWeb, ctrApp); err != nil || n.Container != "app" {
		t.Errorf("just within retention: %+v, %v; want app named", n, err)
	}
	c.advance(2 * time.Second)
	n, err := namesWithin(t, r, c.now().Add(-Retention/2), uidWeb, ctrApp)
	if n.Container != "" || err == nil || !strings.Contains(err.Error(), "container name: cri: the runtime has no container a2ed67c63e82") {
		t.Errorf("past retention: %+v, %v; want the container unnamed and said so", n, err)
	}
}

// A stopped runtime costs a lookup no more than the lookup timeout, and
// says why; names already listed still come; when the runtime is back,
// so are names of pods it had not listed.
func TestCRIRuntimeStoppedAndBack(t *testing.T) {
	rt := newFakeRuntime(t)
	c := newClock()
	r := newCRIResolver(t, rt.path, c)
	if _, err := namesWithin(t, r, c.now(), uidWeb, ctrApp); err != nil {
		t.Fatal(err)
	}
	rt.stopRefusing(t)
	rt.addContainer(ctrBatch, uidBatch, "jobs", "report-29384-abcde", "report")
	c.advance(time.Second)

	n, err := namesWithin(t, r, c.now(), uidBatch, ctrBatch)
	want := "pod and container names: cri: dial unix " + rt.path + ": connect: connection refused"
	if n != (Names{}) || err == nil || err.Error() != want {
		t.Errorf("runtime stopped: %+v, %v; want no names and %q", n, err, want)
	}
	if n, err := namesWithin(t, r, c.now(), uidWeb, ctrApp); err != nil || n.Container != "app" {
		t.Errorf("runtime stopped, container listed before: %+v, %v; want app named", n, err)
	}

	rt.serve(t)
	c.advance(time.Second)
	n, err = namesWithin(t, r, c.now(), uidBatch, ctrBatch)
	if want := (Names{Namespace: "jobs", Pod: "report-29384-abcde", Container: "report"}); err != nil || n != want {
		t.Errorf("runtime back: %+v, %v; want %+v", n, err, want)
	}
}

// A runtime that accepts the call and does not answer costs a lookup the
// lookup timeout, and says so.
func TestCRIRuntimeHangs(t *testing.T) {
	rt := newFakeRuntime(t)
	c := newClock()
	r := newCRIResolver(t, rt.path, c)
	if _, err := namesWithin(t, r, c.now(), uidWeb, ctrApp); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	rt.hang = make(chan struct{})
	rt.mu.Unlock()
	c.advance(time.Second)
	start := time.Now()
	n, err := namesWithin(t, r, c.now(), uidBatch, ctrBatch)
	if took := time.Since(start); took < LookupTimeout {
		t.Errorf("returned after %s: want the lookup to wait for the list up to %s", took, LookupTimeout)
	}
	want := "pod and container names: cri: no answer within " + LookupTimeout.String()
	if n != (Names{}) || err == nil || err.Error() != want {
		t.Errorf("runtime hangs: %+v, %v; want %q", n, err, want)
	}
	// The next event, from before the list that hangs began, does not
	// wait for it again.
	start = time.Now()
	namesWithin(t, r, c.now().Add(-time.Millisecond), uidBatch, ctrBatch)
	if took := time.Since(start); took >= LookupTimeout {
		t.Errorf("a second lookup waited %s for the list already running", took)
	}
	// Stopping the agent does not wait for the list either.
	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited 5s for a list the runtime does not answer")
	}
}

// Auto-detection takes the first path that is a socket.
func TestDetectSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "cri")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	file, sock, missing := filepath.Join(dir, "file.sock"), filepath.Join(dir, "crio.sock"), filepath.Join(dir, "containerd.sock")
	os.WriteFile(file, nil, 0o600)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, err := detectSocket([]string{missing, file, sock}); err != nil || got != sock {
		t.Errorf("detectSocket = %q, %v; want %s", got, err, sock)
	}
	if _, err := detectSocket([]string{missing, file}); err == nil || !strings.Contains(err.Error(), "no container runtime socket at "+missing+", "+file) {
		t.Errorf("no socket: err %v; want the paths tried", err)
	}
}

// One list of a full node: kubelet's default of 110 pods, each with a
// sandbox and three containers.
func BenchmarkCRIList(b *testing.B) {
	dir, err := os.MkdirTemp("", "cri")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rt := &fakeRuntime{path: filepath.Join(dir, "cri.sock")}
	for i := range 110 {
		uid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		rt.addSandbox(fmt.Sprintf("%064x", i<<8), uid, "ns", fmt.Sprintf("pod-%d", i))
		for j := 1; j <= 3; j++ {
			rt.addContainer(fmt.Sprintf("%064x", i<<8|j), uid, "ns", fmt.Sprintf("pod-%d", i), fmt.Sprintf("c%d", j))
		}
	}
	rt.serve(b)
	defer rt.srv.Stop()
	s := newCRISource(rt.path, time.Hour, time.Now, zap.NewNop())
	defer s.close()
	b.ReportAllocs()
	for b.Loop() {
		done, errOf := s.fresh(time.Now())
		<-done
		if err := errOf(); err != nil {
			b.Fatal(err)
		}
	}
}
