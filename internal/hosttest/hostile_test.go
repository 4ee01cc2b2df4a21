// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// Names a workload may choose to attack whoever reads oomtrace's output:
// quotes, CSI and OSC sequences, carriage return, backspace, DEL, a C1
// control, a bidi override and bytes that are not UTF-8. A cgroup name
// may hold any byte but '/' and NUL (and '\n', which the kernel refuses);
// a process name any but NUL, cut by the kernel at 15 bytes.
const (
	hostileCgroup = "ev\"il\x1b[31m\x1b]0;pwn\x07\r\b\t\x7f\u0085\u202e\xff\xfe\\x2d"
	hostileExe    = "\"\x1b[7m\n\r\x7f\xff\u202e\u009bTAIL"
)

// A process whose name is hostile, in a memory cgroup whose name is
// hostile, OOM-killed in that cgroup's 32 MiB: the agent's line is one
// line of valid JSON with both names exact (U+FFFD for their invalid
// bytes, the bytes in comm_hex and cgroup_hex), nothing raw for a
// terminal in it or in the agent's logs; the pretty card and a trace
// session's table and summary show them quoted with escapes and hold no
// control character.
func TestHostileNamesLive(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	rel := "/oomtrace-hostile-" + strconv.Itoa(os.Getpid()) + "/" + hostileCgroup
	dir := tr.mkdir(rel, 32<<20)

	// The kernel names a process after the file it executes.
	exe := filepath.Join(t.TempDir(), hostileExe)
	if err := os.Symlink(memhog(t), exe); err != nil {
		t.Fatal(err)
	}
	comm := hostileExe[:15]

	agent := startAgent(t)
	var card lockedBuffer
	if _, err := launchAgentTo(t, agentReadyTimeout, &card, "--output", "pretty"); err != nil {
		t.Fatal(err)
	}
	session := startTrace(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "--cri-endpoint=none", "--kube-api=off",
		"--cgroup", rel, "--events", "oom_kill", "--count", "1", "--for", "60s", "--output", "table")

	hog := exec.Command(exe, hogOpts{dir: dir, mib: 64, mode: "exit"}.args()...)
	hog.Stderr = os.Stderr
	if err := hog.Run(); !killedBySIGKILL(err) {
		t.Fatalf("hog: %v, want it OOM-killed", err)
	}
	pid := hog.Process.Pid
	session.wait(t, 15*time.Second)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(card.String(), "OOM KILL"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no card from the pretty agent after 15 s:\n%s", card.String())
		}
	}
	events, _ := agent.stop(t)

	// The line: found by its pid, parsed by stop against the schema.
	var kill *event.Event
	for _, e := range ofKind(events, event.KindOOMKill) {
		if e.Victim != nil && int(e.Victim.PID) == pid {
			kill = e
		}
	}
	if kill == nil {
		t.Fatalf("no oom_kill line for the hog (pid %d); stdout:\n%s", pid, agent.stdout.String())
	}
	for _, line := range bytes.Split(bytes.TrimSuffix(agent.stdout.Bytes(), []byte("\n")), []byte("\n")) {
		if !json.Valid(line) {
			t.Errorf("not one line of JSON: %q", line)
		}
		if u := safetexttest.Unsafe(string(line), false); u != "" {
			t.Errorf("the line holds a %s: %q", u, line)
		}
	}
	checkName := func(what, text, hexBytes, want string) {
		t.Helper()
		if wantText := string(bytes.Runes([]byte(want))); text != wantText {
			t.Errorf("%s = %q, want %q", what, text, wantText)
		}
		if b, err := hex.DecodeString(hexBytes); err != nil || string(b) != want {
			t.Errorf("%s_hex = %q (%v), want the bytes %q", what, hexBytes, err, want)
		}
	}
	checkName("victim.comm", kill.Victim.Comm, kill.Victim.CommHex, comm)
	checkName("victim.cgroup", kill.Victim.Cgroup, kill.Victim.CgroupHex, rel)
	if kill.Trigger != nil && int(kill.Trigger.PID) == pid {
		checkName("trigger.comm", kill.Trigger.Comm, kill.Trigger.CommHex, comm)
	}
	if kill.Memcg == nil {
		t.Fatalf("no memcg in the line")
	}
	checkName("memcg.path", kill.Memcg.Path, kill.Memcg.PathHex, rel)
	if kill.Memcg.Stat == nil {
		t.Errorf("memory.stat of the hostile cgroup not read: %s", kill.Memcg.StatError)
	}
	if u := safetexttest.Unsafe(agent.stderr.String(), true); u != "" {
		t.Errorf("the agent's log holds a %s:\n%q", u, agent.stderr.String())
	}

	// The pretty card and the trace session's table and summary.
	for what, out := range map[string]string{"pretty card": card.String(), "trace table": session.stdout.String(), "trace summary": session.stderr.String()} {
		if u := safetexttest.Unsafe(out, true); u != "" {
			t.Errorf("%s holds a %s:\n%q", what, u, out)
		}
	}
	if want := "victim   " + safetext.Quote(comm) + " (pid " + strconv.Itoa(pid) + ","; !strings.Contains(card.String(), want) {
		t.Errorf("pretty card lacks %q:\n%s", want, card.String())
	}
	if want := "in " + safetext.Quote(rel); !strings.Contains(card.String(), want) {
		t.Errorf("pretty card lacks %q:\n%s", want, card.String())
	}
	rows := strings.Split(strings.TrimSuffix(session.stdout.String(), "\n"), "\n")
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "TIME ") || !strings.Contains(rows[1], " "+strconv.Itoa(pid)+" ") {
		t.Errorf("trace table: want the header and the hog's row:\n%s", session.stdout.String())
	}
	if want := "(no pod) cgroup " + safetext.Quote(rel); !strings.Contains(session.stderr.String(), want) {
		t.Errorf("trace summary lacks %q:\n%s", want, session.stderr.String())
	}
	t.Logf("line: victim %s\ncard:\n%s\ntable:\n%s", kill.Victim.CommHex, card.String(), session.stdout.String())
}
