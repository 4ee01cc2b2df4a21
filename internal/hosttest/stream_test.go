// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/stream"
)

// lineClock records when each of the agent's stdout lines arrived, and
// how long after the kernel saw its event.
type lineClock struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (c *lineClock) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		at := time.Now()
		var e event.Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		c.mu.Lock()
		c.delays = append(c.delays, at.Sub(e.Time))
		c.mu.Unlock()
	}
}

// since returns the delays of the lines after the first n, and how many
// lines there are.
func (c *lineClock) since(n int) ([]time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.delays[n:]), len(c.delays)
}

// storm runs n memory hogs one after another in dir, each OOM-killed,
// and returns once the last was.
func storm(t *testing.T, dir string, n int) {
	t.Helper()
	cmd := exec.Command(memhog(t), "hog", "-cgroup", dir, "-mib", "64", "-adj", "0", "-init", "-respawn", "-respawn-max", strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	done := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasSuffix(sc.Text(), "children run") {
				done <- true
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("memhog ended before its storm did")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("storm not over after 60 s")
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// A session that stops reading does not delay the agent's own stdout
// lines: a storm of kills with such a session is written as promptly as
// one without; the session's lost events are counted and told to it.
func TestStuckSessionDoesNotDelayAgent(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	dir := tr.mkdir("/oomtrace-stream-"+newContainerID(t)[:8], 32<<20)
	socket := filepath.Join(t.TempDir(), "oomtrace.sock")
	pr, pw := io.Pipe()
	defer pw.Close()
	clock := &lineClock{}
	go clock.read(pr)
	a, err := launchAgentTo(t, agentReadyTimeout, pw, "--socket="+socket, "--stream-session-buffer=4")
	if err != nil {
		t.Fatal(err)
	}
	const kills = 60
	settle := func() int {
		// The last kill's lines follow its process's death closely.
		time.Sleep(500 * time.Millisecond)
		_, n := clock.since(0)
		return n
	}

	storm(t, dir, kills)
	before := settle()
	alone, _ := clock.since(0)

	// A session for every event that reads its ready line, then nothing.
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.UnixConn).SetReadBuffer(4096)
	if _, err := c.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(c, 1<<20)
	if line, err := r.ReadBytes('\n'); err != nil || !strings.HasPrefix(string(line), `{"stream":"ready"`) {
		t.Fatalf("ready line %q, %v", line, err)
	}
	storm(t, dir, kills)
	after := settle()
	stuck, _ := clock.since(before)

	t.Logf("agent stdout, %d lines without a session: delay after the kernel p50 %v p99 %v max %v",
		len(alone), percentile(alone, 50), percentile(alone, 99), percentile(alone, 100))
	t.Logf("agent stdout, %d lines with a session that does not read: p50 %v p99 %v max %v",
		len(stuck), percentile(stuck, 50), percentile(stuck, 99), percentile(stuck, 100))
	if len(stuck) < kills {
		t.Fatalf("the agent wrote %d lines during the second storm of %d kills", len(stuck), kills)
	}
	if p99, base := percentile(stuck, 99), percentile(alone, 99); p99 > max(3*base, 100*time.Millisecond) {
		t.Errorf("with a stuck session the agent's lines came %v after their events (p99), without %v", p99, base)
	}

	// The session reads again: it is told what it lost.
	c.(*net.UnixConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var end stream.Status
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("no end line: %v", err)
		}
		if strings.HasPrefix(string(line), `{"stream":"end"`) {
			json.Unmarshal(line, &end)
			break
		}
	}
	t.Logf("the stuck session's end line: %+v", end)
	if end.Dropped == 0 {
		t.Errorf("the stuck session lost nothing (%+v): the storm did not fill its buffer, the test shows nothing", end)
	}
	if got := int(end.Sent + end.Dropped + end.AgentDropped); got != after-before {
		t.Errorf("the session was sent %d and lost %d+%d events, the agent wrote %d", end.Sent, end.Dropped, end.AgentDropped, after-before)
	}
	a.stop(t)
}
