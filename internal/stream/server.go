// SPDX-License-Identifier: Apache-2.0

// Package stream serves the agent's events to trace sessions on a Unix
// socket, each filtered on the agent's side, and is the client sessions
// use. The protocol is in docs/stream.md: one JSON request line from the
// client, then the agent's own event lines and status lines, told apart
// by their first key.
//
// The server is an agent sink: Observe only queues. One goroutine
// encodes each event once, keeps it in a bounded history (for a session's
// since), and offers the line to every session whose filter matches; each
// session has its own bounded buffer and its own goroutine writing to its
// socket, so a session that stops reading loses its own events (counted,
// and reported to it) and delays nobody else.
package stream

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/event"
)

// DefaultPath is where the agent serves the stream unless told otherwise.
const DefaultPath = "/run/oomtrace/oomtrace.sock"

// ProtocolVersion is in the ready line; a client refuses another.
const ProtocolVersion = 1

// Defaults of Options.
const (
	DefaultHistorySize    = 1000
	DefaultHistoryAge     = 15 * time.Minute
	DefaultSessionBuffer  = 256
	DefaultStatusInterval = 5 * time.Second
	// sessionSocketBuffer is a session socket's send buffer (the kernel
	// doubles it for its bookkeeping).
	sessionSocketBuffer = 32 << 10
	// maxRequest bounds the request line.
	maxRequest = 64 << 10
	// requestTimeout bounds the wait for a client's request line.
	requestTimeout = 5 * time.Second
)

// Options are the server's settings; zero values take the defaults.
type Options struct {
	Path string
	Node string
	// HistorySize and HistoryAge bound the events kept for since: the
	// last HistorySize events, none older than HistoryAge.
	HistorySize int
	HistoryAge  time.Duration
	// SessionBuffer is how many lines one session may have waiting;
	// past it that session's matching events are dropped and counted.
	SessionBuffer int
	// QueueSize bounds the events observed but not yet dispatched.
	QueueSize int
	// StatusInterval is how often a session gets a status line.
	StatusInterval time.Duration
	Log            *zap.Logger
}

func (o *Options) fill() {
	if o.HistorySize <= 0 {
		o.HistorySize = DefaultHistorySize
	}
	if o.HistoryAge <= 0 {
		o.HistoryAge = DefaultHistoryAge
	}
	if o.SessionBuffer <= 0 {
		o.SessionBuffer = DefaultSessionBuffer
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = DefaultStatusInterval
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
}

// Status is every line of the stream that is not an event; its first key
// is "stream".
type Status struct {
	// Stream says which: "ready" (first line; the request was accepted),
	// "status" (periodic, and after a drop), "end" (last line, once the
	// client closed its side or the agent stops), "error" (the request
	// was refused; the agent closes the connection).
	Stream  string `json:"stream"`
	Version int    `json:"version,omitempty"`
	Node    string `json:"node,omitempty"`
	Error   string `json:"error,omitempty"`
	// Replayed: events from the history sent first (ready line).
	Replayed uint64 `json:"replayed"`
	// Sent: events sent to this session so far, replayed ones included.
	Sent uint64 `json:"sent"`
	// Dropped: matching events this session did not get because its
	// buffer was full (it read too slowly).
	Dropped uint64 `json:"dropped"`
	// AgentDropped: events the stream lost before filtering, for every
	// session alike (its queue was full), since this session started.
	AgentDropped uint64 `json:"agent_dropped"`
}

const (
	StatusReady    = "ready"
	StatusPeriodic = "status"
	StatusEnd      = "end"
	StatusError    = "error"
)

// Server serves events to sessions; it is an agent sink.
type Server struct {
	opts       Options
	ln         *net.UnixListener
	in         chan *event.Event
	queueDrops atomic.Uint64
	done       chan struct{}
	closeOnce  sync.Once
	removeDir  string // made by Listen, removed by Close
	wg         sync.WaitGroup

	mu       sync.Mutex
	history  []entry
	sessions map[*session]struct{}
}

type entry struct {
	ev   *event.Event
	line []byte
	at   time.Time // when the server got it, for HistoryAge
}

// Listen prepares the socket (its directory made 0700 when missing; a
// stale socket left by an agent that died replaced; a live one refused)
// and serves on it until Close.
func Listen(opts Options) (*Server, error) {
	opts.fill()
	madeDir, err := prepareSocket(opts.Path)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("stream socket: %w", err)
	}
	// Root only: the stream shows every pod's processes on the node.
	if err := os.Chmod(opts.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("stream socket: %w", err)
	}
	s := newServer(opts)
	s.ln = ln
	if madeDir {
		s.removeDir = filepath.Dir(opts.Path)
	}
	s.wg.Add(2)
	go s.accept()
	go s.dispatch()
	return s, nil
}

func newServer(opts Options) *Server {
	return &Server{opts: opts, in: make(chan *event.Event, opts.QueueSize), done: make(chan struct{}), sessions: map[*session]struct{}{}}
}

// prepareSocket makes path's directory if missing (madeDir) and removes
// a stale socket at path.
func prepareSocket(path string) (madeDir bool, err error) {
	if path == "" || !filepath.IsAbs(path) {
		return false, fmt.Errorf("stream socket %q: want an absolute path", path)
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("stream socket: %w", err)
		}
		madeDir = true
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return madeDir, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return false, fmt.Errorf("stream socket %s: a %s is there, not a socket; not replacing it", path, fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return false, fmt.Errorf("stream socket %s: another agent serves on it (give this one another --socket, or none)", path)
	}
	// Nobody listens: an agent died without removing it.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("stream socket: remove stale %w", err)
	}
	return madeDir, nil
}

// Observe queues e for the sessions and the history; it never waits.
func (s *Server) Observe(e *event.Event) {
	select {
	case s.in <- e:
	default:
		s.queueDrops.Add(1)
	}
}

// Close stops accepting, sends every session its end line, closes them
// and removes the socket.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ln != nil {
			s.ln.Close() // removes the socket file too
		}
		// A session blocked writing to a client that stopped reading
		// must not hold the agent's exit: its write fails after a grace
		// second for the end line.
		s.mu.Lock()
		for ss := range s.sessions {
			ss.conn.SetWriteDeadline(time.Now().Add(time.Second))
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
	if s.removeDir != "" {
		os.Remove(s.removeDir) // only if empty: someone else's files stay
	}
	return nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			s.opts.Log.Warn("stream: accept", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Server) dispatch() {
	defer s.wg.Done()
	for {
		select {
		case e := <-s.in:
			s.publish(e)
		case <-s.done:
			return
		}
	}
}

// publish encodes e once, keeps it and offers it to matching sessions.
func (s *Server) publish(e *event.Event) {
	buf, err := event.EncodeLine(e)
	if err != nil {
		s.opts.Log.Error("stream: encode event", zap.Error(err))
		return
	}
	line := append([]byte(nil), buf.Bytes()...)
	buf.Free()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = append(s.history, entry{ev: e, line: line, at: now})
	drop := max(len(s.history)-s.opts.HistorySize, 0)
	for drop < len(s.history) && now.Sub(s.history[drop].at) > s.opts.HistoryAge {
		drop++
	}
	clear(s.history[:drop]) // for the collector; append copies the rest when it grows
	s.history = s.history[drop:]
	for ss := range s.sessions {
		if ss.filter.Match(e) {
			ss.offer(line)
		}
	}
}

// session is one connected client.
type session struct {
	conn       *net.UnixConn
	filter     Filter
	ch         chan []byte
	dropped    atomic.Uint64
	queueDrops uint64 // the server's when the session started
}

func (ss *session) offer(line []byte) {
	select {
	case ss.ch <- line:
	default:
		ss.dropped.Add(1)
	}
}

// serve reads c's request, replays the history it asks for and streams
// matching events until the client closes its side or the server stops.
func (s *Server) serve(c *net.UnixConn) {
	defer c.Close()
	// What a session that does not read holds in the kernel is bounded
	// too, and it reaches its own buffer's bound, and is told of its
	// drops, sooner.
	c.SetWriteBuffer(sessionSocketBuffer)
	req, err := readRequest(c)
	if err != nil {
		s.opts.Log.Info("stream: request refused", zap.Error(err))
		writeStatus(c, Status{Stream: StatusError, Error: err.Error()})
		return
	}
	since, _ := req.since() // checked by readRequest
	ss := &session{conn: c, filter: req.Filter, ch: make(chan []byte, s.opts.SessionBuffer)}

	// The history is read and the session added at once, so no event is
	// both replayed and sent live, and none falls between.
	s.mu.Lock()
	var replay [][]byte
	if since > 0 {
		now := time.Now()
		from := now.Add(-since)
		for _, h := range s.history {
			if !h.ev.Time.Before(from) && now.Sub(h.at) <= s.opts.HistoryAge && ss.filter.Match(h.ev) {
				replay = append(replay, h.line)
			}
		}
	}
	ss.queueDrops = s.queueDrops.Load()
	select {
	case <-s.done: // Close has set the deadlines already
		s.mu.Unlock()
		return
	default:
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()

	st := Status{Stream: StatusReady, Version: ProtocolVersion, Node: s.opts.Node, Replayed: uint64(len(replay))}
	if writeStatus(c, st) != nil {
		return
	}
	for _, l := range replay {
		if _, err := c.Write(l); err != nil {
			return
		}
		st.Sent++
	}

	// The client says it is done by closing its side: then it gets the
	// end line with its final counts.
	hangup := make(chan struct{})
	go func() {
		defer close(hangup)
		c.SetReadDeadline(time.Time{})
		io.Copy(io.Discard, c)
	}()
	status := func(kind string) error {
		st.Stream, st.Dropped, st.AgentDropped = kind, ss.dropped.Load(), s.queueDrops.Load()-ss.queueDrops
		return writeStatus(c, st)
	}
	tick := time.NewTicker(s.opts.StatusInterval)
	defer tick.Stop()
	var reported uint64
	for {
		select {
		case l := <-ss.ch:
			if _, err := c.Write(l); err != nil {
				return
			}
			st.Sent++
			// A drop is told at once, after the lines that made it.
			if d := ss.dropped.Load(); d > reported && len(ss.ch) == 0 {
				reported = d
				if status(StatusPeriodic) != nil {
					return
				}
			}
		case <-tick.C:
			if status(StatusPeriodic) != nil {
				return
			}
		case <-hangup:
			if drain(c, ss.ch, &st) == nil {
				status(StatusEnd)
			}
			return
		case <-s.done:
			// A client that stopped reading must not hold the agent's exit.
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if drain(c, ss.ch, &st) == nil {
				status(StatusEnd)
			}
			return
		}
	}
}

// drain writes the lines already queued for the session, so the end
// line's counts add up: sent, dropped, or lost before filtering.
func drain(c net.Conn, ch chan []byte, st *Status) error {
	for {
		select {
		case l := <-ch:
			if _, err := c.Write(l); err != nil {
				return err
			}
			st.Sent++
		default:
			return nil
		}
	}
}

// readRequest reads and checks the request line.
func readRequest(c net.Conn) (Request, error) {
	var req Request
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReaderSize(io.LimitReader(c, maxRequest+1), 4096)
	line, err := r.ReadBytes('\n')
	if err != nil {
		if len(line) > maxRequest {
			return req, fmt.Errorf("bad request: longer than %d bytes", maxRequest)
		}
		return req, fmt.Errorf("bad request: want one JSON object and a newline within %s: %w", requestTimeout, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("bad request: %w", err)
	}
	if err := req.Check(); err != nil {
		return req, fmt.Errorf("bad request: %w", err)
	}
	if _, err := req.since(); err != nil {
		return req, fmt.Errorf("bad request: %w", err)
	}
	return req, nil
}

func writeStatus(w io.Writer, st Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
