// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
)

func kill(ns, pod string, pid uint32, at time.Time) *event.Event {
	return &event.Event{
		Event: event.KindOOMKill, Time: at, Node: "n1",
		Victim: &event.Victim{PID: pid, Comm: "hog", Cgroup: "/kubepods/pod" + pod + "/c1"},
		Memcg:  &event.Memcg{Path: "/kubepods/pod" + pod},
		K8s:    &event.K8s{Namespace: ns, Pod: pod, PodUID: "uid-" + pod, Container: "main"},
	}
}

func listen(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "run", "oomtrace.sock")
	}
	s, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Server, req Request) *Client {
	t.Helper()
	c, err := Dial(s.opts.Path, req, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next reads one event, failing after a second.
func next(t *testing.T, c *Client) ([]byte, *event.Event) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, e, err := c.Next()
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return line, e
}

// waitSessions waits until n sessions are registered.
func waitSessions(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		got := len(s.sessions)
		s.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("sessions never reached %d", n)
}

// The socket is the documented kind: only root may connect, in a
// directory only root may enter.
func TestSocketPermissions(t *testing.T) {
	s := listen(t, Options{})
	fi, err := os.Stat(s.opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(s.opts.Path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory made with %v, want 0700", di.Mode().Perm())
	}
	s.Close()
	if _, err := os.Lstat(filepath.Dir(s.opts.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket or the directory made for it still there after Close: %v", err)
	}
}

// Two sessions with different filters each get exactly their pod's
// events, as the agent's own line bytes.
func TestTwoSessionsFiltered(t *testing.T) {
	s := listen(t, Options{})
	a := dial(t, s, Request{Filter: Filter{Namespace: "shop", Pod: "web"}})
	b := dial(t, s, Request{Filter: Filter{PodUID: "uid-db"}})
	waitSessions(t, s, 2)
	now := time.Now()
	events := []*event.Event{kill("shop", "web", 1, now), kill("shop", "db", 2, now), kill("other", "web", 3, now), kill("shop", "web", 4, now)}
	for _, e := range events {
		s.Observe(e)
	}
	want := func(e *event.Event) []byte {
		buf, err := event.EncodeLine(e)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	for _, pid := range []uint32{1, 4} {
		line, e := next(t, a)
		if e.Victim.PID != pid {
			t.Fatalf("session web got pid %d, want %d", e.Victim.PID, pid)
		}
		if !bytes.Equal(line, want(events[pid-1])) {
			t.Errorf("line differs from the agent's:\n got %s\nwant %s", line, want(events[pid-1]))
		}
	}
	if _, e := next(t, b); e.Victim.PID != 2 {
		t.Fatalf("session db got pid %d, want 2", e.Victim.PID)
	}
	// Nothing else arrives: the end line comes next.
	for _, c := range []*Client{a, b} {
		st := c.Finish(2 * time.Second)
		if st.Stream != StatusEnd || st.Dropped != 0 {
			t.Errorf("final status %+v, want end with no drops", st)
		}
	}
	if st := a.Last; st.Sent != 2 {
		t.Errorf("session web: sent %d, want 2", st.Sent)
	}
}

// A session that stops reading loses its own events, counted and told to
// it; Observe stays fast and another session gets every event.
func TestSlowSessionDropsOnlyItsOwn(t *testing.T) {
	s := listen(t, Options{SessionBuffer: 1024})
	slow := dial(t, s, Request{})
	fast := dial(t, s, Request{})
	waitSessions(t, s, 2)
	const n = 5000
	got := make(chan int)
	var seen atomic.Int64
	go func() {
		fast.SetReadDeadline(time.Now().Add(30 * time.Second))
		for seen.Load() < n {
			if _, _, err := fast.Next(); err != nil {
				break
			}
			seen.Add(1)
		}
		got <- int(seen.Load())
	}()
	// Events of 1 KiB of stack each, so the slow session's socket fills.
	stack := []string{strings.Repeat("x", 1024)}
	var slowest time.Duration
	start := time.Now()
	for i := range n {
		e := kill("shop", "web", uint32(i+1), time.Now())
		e.Stack = stack
		t0 := time.Now()
		s.Observe(e)
		slowest = max(slowest, time.Since(t0))
		// Keep the reading session within half its buffer, whatever the
		// machine's speed: a session that reads loses nothing, so any drop
		// it reports is the slow one's leaking into it.
		for deadline := time.Now().Add(10 * time.Second); seen.Load() < int64(i)-512 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	}
	t.Logf("%d events observed in %v, the slowest Observe took %v", n, time.Since(start), slowest)
	if slowest > 10*time.Millisecond {
		t.Errorf("an Observe took %v with a session not reading", slowest)
	}
	if seen := <-got; seen != n {
		t.Errorf("the reading session got %d of %d events", seen, n)
	}
	if st := fast.Finish(5 * time.Second); st.Dropped != 0 || st.Sent != n {
		t.Errorf("the reading session's final status %+v, want %d sent, none dropped", st, n)
	}
	st := slow.Finish(5 * time.Second)
	t.Logf("slow session: %+v", st)
	if st.Stream != StatusEnd || st.Dropped == 0 {
		t.Errorf("slow session's final status %+v, want end with drops", st)
	}
	if st.Sent+st.Dropped+st.AgentDropped != n {
		t.Errorf("slow session: sent %d + dropped %d + agent dropped %d, want %d", st.Sent, st.Dropped, st.AgentDropped, n)
	}
}

// since replays the held events of that last while, then live ones.
func TestSinceReplaysHistory(t *testing.T) {
	s := listen(t, Options{HistorySize: 3})
	now := time.Now()
	s.Observe(kill("shop", "web", 1, now.Add(-2*time.Hour))) // too old for since
	s.Observe(kill("shop", "web", 2, now.Add(-time.Minute)))
	s.Observe(kill("shop", "db", 3, now.Add(-time.Minute))) // another pod
	s.Observe(kill("shop", "web", 4, now))
	s.Observe(kill("shop", "web", 5, now)) // pushes pid 2 out of a 3-event history
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.history)
		last := uint32(0)
		if n > 0 {
			last = s.history[n-1].ev.Victim.PID
		}
		s.mu.Unlock()
		if last == 5 {
			if n != 3 {
				t.Fatalf("history holds %d events, want 3", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("events never reached the history")
		}
	}
	c := dial(t, s, Request{Filter: Filter{Pod: "web"}, Since: "5m"})
	if c.Ready.Replayed != 2 {
		t.Errorf("ready line says %d replayed, want 2", c.Ready.Replayed)
	}
	for _, pid := range []uint32{4, 5} {
		if _, e := next(t, c); e.Victim.PID != pid {
			t.Fatalf("replayed pid %d, want %d", e.Victim.PID, pid)
		}
	}
	s.Observe(kill("shop", "web", 6, time.Now()))
	if _, e := next(t, c); e.Victim.PID != 6 {
		t.Fatalf("live pid %d after the replay, want 6", e.Victim.PID)
	}
}

// A bad request is refused with a message naming the input.
func TestBadRequests(t *testing.T) {
	s := listen(t, Options{})
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Filter: Filter{Events: []string{"oom_kil"}}}, `event kind "oom_kil": want oom_kill, memcg_oom`},
		{Request{Since: "5 minutes"}, `since "5 minutes": want a duration`},
		{Request{Filter: Filter{Cgroup: "kubepods"}}, `cgroup "kubepods": want a path`},
	} {
		_, err := Dial(s.opts.Path, tc.req, 2*time.Second)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("request %+v: error %v, want a refusal with %q", tc.req, err, tc.want)
		}
	}
	// Not JSON, or a field the agent does not know.
	for line, want := range map[string]string{"hello\n": "bad request: invalid character", `{"pods":"web"}` + "\n": `unknown field "pods"`} {
		c, err := net.Dial("unix", s.opts.Path)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, line)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1024)
		n, _ := c.Read(buf)
		c.Close()
		st, ok := parseStatus(buf[:n])
		if !ok || st.Stream != StatusError || !strings.Contains(st.Error, want) {
			t.Errorf("request %q: answer %q, want an error line with %q", line, buf[:n], want)
		}
	}
}

// What answers at the socket but is not an agent is told apart from no
// agent at all.
func TestDialNotAnAgent(t *testing.T) {
	dir := t.TempDir()
	if _, err := Dial(filepath.Join(dir, "none.sock"), Request{}, time.Second); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no socket: %v, want ErrNoAgent", err)
	}
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	path := filepath.Join(dir, "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "220 smtp ready\r\n")
			c.Close()
		}
	}()
	for _, p := range []string{path, plain} {
		_, err = Dial(p, Request{}, time.Second)
		var na *NotAgentError
		if !errors.As(err, &na) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want a NotAgentError naming the socket", p, err)
		}
	}
}

// A stale socket (its agent died) is replaced; a live one is an error.
func TestStaleAndLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens
	s := listen(t, Options{Path: path})
	if _, err := Listen(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "another agent serves on it") {
		t.Errorf("second server on a live socket: %v, want an error", err)
	}
	dial(t, s, Request{}) // the first still serves
	s.Close()
	s.Observe(kill("a", "b", 1, time.Now())) // after Close: neither blocks nor panics
}

// Close returns promptly even when a session's client stopped reading
// with lines still to write: the agent's exit waits for no client.
func TestCloseWithStuckSession(t *testing.T) {
	s := listen(t, Options{SessionBuffer: 4096, QueueSize: 100000})
	dial(t, s, Request{}) // and never read
	waitSessions(t, s, 1)
	stack := []string{strings.Repeat("x", 4096)}
	for i := range 2000 {
		e := kill("shop", "web", uint32(i+1), time.Now())
		e.Stack = stack
		s.Observe(e)
	}
	time.Sleep(200 * time.Millisecond) // the session's writer is blocked by now
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with a session that does not read", took)
	}
}
