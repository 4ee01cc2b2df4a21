// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/stream"
)

// A mistake in a trace session's flags exits 2 naming the input, before
// any socket or probe is touched.
func TestTraceUsageErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o600)
	// Something else serving on a Unix socket.
	other := filepath.Join(dir, "other.sock")
	ln, err := net.Listen("unix", other)
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
			fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown event kind", []string{"trace", "--events", "oom_kill,oom_kil"},
			[]string{`--events: event kind "oom_kil": want oom_kill, memcg_oom, alloc_failure, oom_victim_exiting`, "Run 'oomtrace trace --help' for usage."}},
		{"malformed --for", []string{"trace", "--for", "3 seconds"},
			[]string{`invalid argument "3 seconds" for "--for" flag`}},
		{"malformed --since", []string{"trace", "--since=yesterday"},
			[]string{`invalid argument "yesterday" for "--since" flag`}},
		{"negative --for", []string{"trace", "--for=-1s"},
			[]string{"--for -1s: want a positive duration"}},
		{"negative --count", []string{"trace", "--count=-1"},
			[]string{"--count -1: want 1 or more"}},
		{"bad --output", []string{"trace", "-o", "yaml"},
			[]string{`--output "yaml": want table, pretty or json`}},
		{"relative --cgroup", []string{"trace", "--cgroup", "kubepods/burstable"},
			[]string{`--cgroup: cgroup "kubepods/burstable": want a path from the memory hierarchy's root`}},
		{"relative --socket", []string{"trace", "--socket", "oomtrace.sock"},
			[]string{`--socket "oomtrace.sock": want an absolute path`}},
		{"--socket is another server", []string{"trace", "--socket", other, "--for", "1s"},
			[]string{"--socket: socket " + other + " is not an oomtrace agent's stream"}},
		{"--socket is a file", []string{"trace", "--socket", plain, "--for", "1s"},
			[]string{"--socket: socket " + plain + " is not an oomtrace agent's stream: not a socket"}},
		{"agent: relative --socket", []string{"agent", "--socket=run/oomtrace.sock"},
			[]string{`--socket "run/oomtrace.sock": want an absolute path`}},
		{"agent: --stream-history 0", []string{"agent", "--stream-history=0"},
			[]string{"--stream-history 0: want 1 or more events"}},
		{"agent: --stream-history-age 0", []string{"agent", "--stream-history-age=0s"},
			[]string{"--stream-history-age 0s: want a positive duration"}},
		{"extra argument", []string{"trace", "web"},
			[]string{`oomtrace trace takes no arguments, got ["web"]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// A session on an agent's socket prints the agent's exact line for a
// matching event, ends after --count events with status 0, and sums up
// on stderr.
func TestTraceFollowsAgent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oomtrace.sock")
	srv, err := stream.Listen(stream.Options{Path: path, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	other := &event.Event{Event: event.KindOOMKill, Time: time.Now(), Node: "n1",
		Victim: &event.Victim{PID: 7, Comm: "db"}, K8s: &event.K8s{Namespace: "shop", Pod: "db-0"}}
	mine := &event.Event{Event: event.KindOOMKill, Time: time.Now(), Node: "n1",
		Victim: &event.Victim{PID: 8, Comm: "web"}, K8s: &event.K8s{Namespace: "shop", Pod: "web-1"}}
	stopFeeding := make(chan struct{})
	defer close(stopFeeding)
	go func() {
		// Until the session has subscribed and ended: it registers at
		// some point after it starts.
		for {
			select {
			case <-stopFeeding:
				return
			case <-time.After(20 * time.Millisecond):
				srv.Observe(other)
				srv.Observe(mine)
			}
		}
	}()
	code, stdout, stderr := runCLI(t, "trace", "--socket", path, "--namespace", "shop", "--pod", "web-1", "--count", "1", "--for", "10s")
	checkFollowed(t, code, stdout, stderr, path, mine)
	code, stdout, stderr = runCLI(t, "trace", "--socket", path, "--pod", "web-1", "--count", "1", "--for", "10s", "-o", "table")
	if code != 0 || !strings.HasPrefix(stdout, "TIME ") || !strings.Contains(stdout, " shop ") || !strings.Contains(stdout, " web-1 ") || strings.Count(stdout, "\n") != 2 {
		t.Errorf("-o table: exit %d, want 0 and a header and web-1's row:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func checkFollowed(t *testing.T, code int, stdout, stderr, path string, mine *event.Event) {
	t.Helper()
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	buf, err := event.EncodeLine(mine)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != buf.String() {
		t.Errorf("stdout (not a terminal: json) is not the agent's one line:\n got %q\nwant %q", stdout, buf.String())
	}
	for _, w := range []string{"following the agent at " + path + " (node n1)", "1 events in", "0 dropped", "oom_kill", "shop/web-1"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "db-0") {
		t.Errorf("the summary counts another pod's event:\n%s", stderr)
	}
}

// --for ends a session that saw nothing, with status 0 and an empty
// summary, after about that long.
func TestTraceForNoEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oomtrace.sock")
	srv, err := stream.Listen(stream.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	start := time.Now()
	code, stdout, stderr := runCLI(t, "trace", "--socket", path, "--for", "500ms")
	took := time.Since(start)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 0 and nothing; stderr:\n%s", code, stdout, stderr)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("ran %v, want about 500ms", took)
	}
	if !strings.Contains(stderr, "0 events in") || strings.Contains(stderr, "by kind") {
		t.Errorf("summary is not empty:\n%s", stderr)
	}
}
