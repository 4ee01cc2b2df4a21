// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIEndpoints are where container runtimes put their CRI socket, in the
// order auto-detection tries them: containerd, cri-o (both paths), k3s's
// embedded containerd, cri-dockerd.
var CRIEndpoints = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/var/run/crio/crio.sock",
	"/run/k3s/containerd/containerd.sock",
	"/var/run/cri-dockerd.sock",
}

// Labels kubelet puts on every sandbox and container it creates.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
)

// criListTimeout bounds one list of the runtime. Lookups wait far less
// (LookupTimeout); a list that takes longer still fills the table for
// the next ones.
const criListTimeout = 10 * time.Second

// criSource lists the runtime's sandboxes and containers every poll
// interval, and at once when a lookup misses.
type criSource struct {
	// endpoint is the socket path; empty until auto-detection finds one.
	endpoint   string
	candidates []string // auto-detection's paths; nil for a given endpoint
	log        *zap.Logger
	store      *store

	conn *grpc.ClientConn // owned by the poll goroutine
	// dialErr is the last dial's error (nil after a dial that worked),
	// which says plainly why a runtime cannot be reached.
	dialMu  sync.Mutex
	dialErr error

	rounds rounds
	stop   context.CancelFunc
	done   chan struct{}
}

// newCRISource starts listing: at once, then every interval.
// endpoint is a socket path (unix:// allowed) or "" to auto-detect.
func newCRISource(endpoint string, interval time.Duration, now func() time.Time, log *zap.Logger) *criSource {
	s := &criSource{log: log, store: newStore(now), done: make(chan struct{})}
	if endpoint == "" {
		s.candidates = CRIEndpoints
	} else {
		s.endpoint = strings.TrimPrefix(endpoint, "unix://")
	}
	s.rounds.init(now)
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.poll(ctx, interval)
	return s
}

func (s *criSource) name() string         { return "cri" }
func (s *criSource) namesWorkloads() bool { return false }
func (s *criSource) lookup(podUID, containerID string) (*pod, *container) {
	return s.store.lookup(podUID, containerID)
}
func (s *criSource) fresh(at time.Time) (<-chan struct{}, func() error) { return s.rounds.after(at) }

func (s *criSource) notFound(podUID, containerID string) string {
	if p, _ := s.store.lookup(podUID, ""); p == nil {
		return fmt.Sprintf("the runtime has no pod %s", podUID)
	}
	return fmt.Sprintf("the runtime has no container %s in pod %s", short(containerID), podUID)
}

func (s *criSource) close() {
	s.stop()
	<-s.done
}

// poll lists the runtime every interval, and whenever a lookup asks.
func (s *criSource) poll(ctx context.Context, interval time.Duration) {
	defer close(s.done)
	defer func() {
		if s.conn != nil {
			s.conn.Close()
		}
	}()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var down error // the last list's error, to log changes only
	first := true
	for {
		r := s.rounds.begin()
		err := s.list(ctx)
		s.rounds.end(r, err)
		switch {
		case ctx.Err() != nil: // stopping: the list was cut short
		case err != nil && (first || down == nil || err.Error() != down.Error()):
			s.log.Warn("names: the container runtime cannot be listed; pods it has not listed before get k8s.lookup_error until it can", zap.Error(err))
		case err == nil && down != nil:
			s.log.Info("names: the container runtime answers again", zap.String("endpoint", s.endpoint))
		case err == nil && first:
			s.log.Info("names: listed the container runtime", zap.String("endpoint", s.endpoint), zap.Int("pods", s.store.count()))
		}
		down, first = err, false
		select {
		case <-ctx.Done():
			s.rounds.stop(errors.New("the agent is stopping"))
			return
		case <-ticker.C:
		case <-s.rounds.kick:
		}
	}
}

// list reads every sandbox and container into the table. A connection
// that worked before and broke (the runtime restarted) is dialled again
// at once, so the list says how the runtime is now.
func (s *criSource) list(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, criListTimeout)
	defer cancel()
	err := s.listOnce(ctx)
	var broken brokenConn
	if errors.As(err, &broken) {
		err = s.listOnce(ctx)
	}
	if errors.As(err, &broken) {
		err = broken.error
	}
	return err
}

// brokenConn is an error on a connection that had worked and was lost.
type brokenConn struct{ error }

func (s *criSource) listOnce(ctx context.Context) error {
	client, err := s.client()
	if err != nil {
		return err
	}
	sandboxes, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return s.failed("ListPodSandbox", err)
	}
	containers, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return s.failed("ListContainers", err)
	}
	pods := map[string]*pod{}
	ctrs := map[string]*container{}
	for _, sb := range sandboxes.GetItems() {
		uid, ok := kubeletPod(sb.GetLabels(), pods)
		if !ok {
			continue
		}
		ctrs[sb.GetId()] = &container{podUID: uid, sandbox: true}
	}
	for _, c := range containers.GetContainers() {
		uid, ok := kubeletPod(c.GetLabels(), pods)
		if !ok {
			continue
		}
		ctrs[c.GetId()] = &container{podUID: uid, name: c.GetLabels()[labelContainerName]}
	}
	s.store.replaceAll(pods, ctrs)
	return nil
}

// kubeletPod records the pod that kubelet's labels name, and returns its
// UID; false for what kubelet did not create.
func kubeletPod(labels map[string]string, pods map[string]*pod) (string, bool) {
	uid, name := labels[labelPodUID], labels[labelPodName]
	if uid == "" || name == "" {
		return "", false
	}
	if _, ok := pods[uid]; !ok {
		pods[uid] = &pod{namespace: labels[labelPodNamespace], name: name}
	}
	return uid, true
}

// client connects to the runtime, finding its socket first when it was
// not given.
func (s *criSource) client() (runtimeapi.RuntimeServiceClient, error) {
	if s.conn != nil {
		return runtimeapi.NewRuntimeServiceClient(s.conn), nil
	}
	if s.endpoint == "" {
		path, err := detectSocket(s.candidates)
		if err != nil {
			return nil, err
		}
		s.endpoint = path
		s.log.Info("names: found the container runtime's socket", zap.String("endpoint", path))
	}
	path := s.endpoint
	conn, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("localhost"),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			s.dialMu.Lock()
			s.dialErr = err
			s.dialMu.Unlock()
			return c, err
		}),
		// A node's full container list; kubelet allows as much.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.conn = conn
	return runtimeapi.NewRuntimeServiceClient(conn), nil
}

// failed turns an RPC's error into a reason, and drops a connection that
// did not answer, so that the next list dials afresh: a runtime that
// comes back is found at the next poll rather than after gRPC's backoff,
// and the reason is the dial's own. A connection that had worked and was
// lost is a brokenConn: a new dial may answer now.
func (s *criSource) failed(method string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		s.conn.Close()
		s.conn = nil
		s.dialMu.Lock()
		dialErr := s.dialErr
		s.dialErr = nil
		s.dialMu.Unlock()
		if dialErr != nil {
			return dialErr
		}
		if st.Code() == codes.DeadlineExceeded {
			return fmt.Errorf("%s: no answer from %s within %s", method, s.endpoint, criListTimeout)
		}
	}
	reason := fmt.Errorf("%s on %s: %s", method, s.endpoint, st.Message())
	if st.Code() == codes.Unavailable {
		return brokenConn{reason}
	}
	return reason
}

// detectSocket returns the first of paths that is a socket.
func detectSocket(paths []string) (string, error) {
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no container runtime socket at %s", strings.Join(paths, ", "))
}

// rounds runs one list at a time and lets lookups wait for a list that
// started after a given time: concurrent misses share one list, and a
// miss after a list that already started later costs nothing.
type rounds struct {
	mu       sync.Mutex
	now      func() time.Time
	last     *round // the latest that ended
	inflight *round
	next     *round // asked for, not yet begun
	kick     chan struct{}
	stopped  bool
}

type round struct {
	start time.Time
	done  chan struct{}
	err   error
}

func (r *rounds) init(now func() time.Time) {
	r.now = now
	r.kick = make(chan struct{}, 1)
}

// after returns a round that started at or after at: the last one, the
// one running, or the next one, which it asks for.
func (r *rounds) after(at time.Time) (<-chan struct{}, func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rd *round
	switch {
	case r.last != nil && (r.stopped || !r.last.start.Before(at)):
		rd = r.last
	case r.inflight != nil && !r.inflight.start.Before(at):
		rd = r.inflight
	default:
		if r.next == nil {
			r.next = &round{done: make(chan struct{})}
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		rd = r.next
	}
	return rd.done, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		return rd.err
	}
}

func (r *rounds) begin() *round {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd := r.next
	if rd == nil {
		rd = &round{done: make(chan struct{})}
	}
	r.next = nil
	select {
	case <-r.kick: // asked for this round
	default:
	}
	rd.start = r.now()
	r.inflight = rd
	return rd
}

// stop ends the round lookups wait for, if any, with err, and every later
// lookup with the last round.
func (r *rounds) stop(err error) {
	rd := r.begin()
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.end(rd, err)
}

func (r *rounds) end(rd *round, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd.err = err
	r.last, r.inflight = rd, nil
	close(rd.done)
}
