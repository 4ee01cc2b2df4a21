// SPDX-License-Identifier: Apache-2.0

// Package health is the agent's HTTP listener (--metrics-addr): /healthz
// says the process is alive, /readyz says whether every probe is attached.
// Kubelet's liveness and readiness probes ask them; more handlers (metrics)
// can be added on the same listener with Handle.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// State is what /readyz reports.
type State int32

const (
	// Starting: the probes are not attached yet (503).
	Starting State = iota
	// Ready: every probe is attached; OOM kills are being traced (200).
	Ready
	// Stopping: shutdown began; events may be missed from now on (503).
	Stopping
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting: probes not attached yet"
	case Ready:
		return "ready"
	case Stopping:
		return "stopping"
	}
	return fmt.Sprintf("state %d", int32(s))
}

// Server serves the health endpoints on one listener.
type Server struct {
	state atomic.Int32
	mux   *http.ServeMux
	srv   *http.Server
	ln    net.Listener
	done  chan error
}

// CheckAddr tells whether addr is a listen address (host:port, either part
// may be empty) before anything is started, so a typo is a usage error.
func CheckAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q: want [HOST]:PORT, e.g. :9746 or 127.0.0.1:9746 (%v)", addr, err)
	}
	return nil
}

// Listen binds addr and starts serving; the state starts as Starting.
func Listen(addr string) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{mux: http.NewServeMux(), ln: ln, done: make(chan error, 1)}
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.State()
		if st != Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st)
	})
	// Probes and scrapes are small requests: a client that trickles its
	// headers must not hold a connection open for good.
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on (with the port chosen when
// the address asked for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handle adds a handler on the same listener.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// SetState changes what /readyz reports.
func (s *Server) SetState(st State) { s.state.Store(int32(st)) }

// State is what /readyz reports now.
func (s *Server) State() State { return State(s.state.Load()) }

// Close stops the listener, letting requests in flight finish until ctx
// ends.
func (s *Server) Close(ctx context.Context) error {
	s.SetState(Stopping)
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
