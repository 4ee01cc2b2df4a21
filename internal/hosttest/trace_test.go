// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
)

// lockedBuffer is written by a process's output copier while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// traceRun is a running `oomtrace trace`.
type traceRun struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	exited         chan struct{}
	waitErr        error
	started        time.Time
}

// startTrace runs a trace session (JSON lines: stdout is no terminal) and
// returns once it follows the agent or its own probes are attached.
func startTrace(t *testing.T, args ...string) *traceRun {
	t.Helper()
	r := &traceRun{cmd: exec.Command(oomtraceBin, append([]string{"trace"}, args...)...), exited: make(chan struct{}), started: time.Now()}
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	tracing := func() bool {
		s := r.stderr.String()
		return strings.Contains(s, "following the agent") || strings.Contains(s, "probes attached")
	}
	for !tracing() {
		select {
		case <-r.exited:
			if tracing() { // a session that ended at once (--since, --count)
				return r
			}
			t.Fatalf("trace %v exited before it was tracing (%v); stderr:\n%s", args, r.waitErr, r.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %v not tracing after 30 s; stderr:\n%s", args, r.stderr.String())
		}
	}
	return r
}

// wait waits for the session to end by itself and checks it exited 0.
func (r *traceRun) wait(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(within):
		t.Fatalf("trace still running after %v; stderr:\n%s", within, r.stderr.String())
	}
	if r.waitErr != nil {
		t.Fatalf("trace exited with %v; stderr:\n%s", r.waitErr, r.stderr.String())
	}
	return time.Since(r.started)
}

// interrupt ends the session as Ctrl-C does.
func (r *traceRun) interrupt(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	r.wait(t, 10*time.Second)
}

// events parses the session's stdout, each line schema-valid.
func (r *traceRun) events(t *testing.T) []*event.Event {
	t.Helper()
	schema := eventtest.Schema(t)
	var events []*event.Event
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout.String(), "\n"), "\n") {
		if line != "" {
			events = append(events, eventtest.Validate(t, schema, []byte(line)))
		}
	}
	return events
}

// waitForKill waits until the session has shown an oom_kill.
func (r *traceRun) waitForKill(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(r.stdout.String(), `"event":"oom_kill"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no oom_kill shown after 15 s; stderr:\n%s", r.stderr.String())
		}
	}
}

// tracePod is a pod cgroup with a small container limit.
type tracePod struct {
	uid, ctr string
}

func newTracePod(t *testing.T, tr *tree) tracePod {
	uid := newPodUID(t)
	dir := tr.mkdir("/kubepods/burstable/pod"+uid+"/"+newContainerID(t), 32<<20)
	return tracePod{uid: uid, ctr: dir}
}

// oom runs a 64 MiB hog in the pod's 32 MiB container until it is killed.
func (p tracePod) oom(t *testing.T) {
	t.Helper()
	if err := startHog(t, p.ctr, 64, "exit").wait(t); !killedBySIGKILL(err) {
		t.Fatalf("hog exit %v, want killed by SIGKILL", err)
	}
}

// checkOnlyPod checks every event is pod uid's and that kills of them
// there are.
func checkOnlyPod(t *testing.T, name string, events []*event.Event, uid string, kills int) {
	t.Helper()
	for _, e := range events {
		if e.K8s == nil || e.K8s.PodUID != uid {
			t.Errorf("session %s: got an event of another pod: %s %+v", name, e.Event, e.K8s)
		}
	}
	if got := len(ofKind(events, event.KindOOMKill)); got != kills {
		t.Errorf("session %s: %d oom_kill events, want %d", name, got, kills)
	}
}

// With an agent running, sessions filtered to two pods each see exactly
// their pod's kill while a third pod OOMs too; --count 1 ends after one
// event with status 0; --for 3s with nothing to show ends after about
// 3 s with an empty summary; --since returns a kill from before the
// session started.
func TestTraceSessionsOnAgent(t *testing.T) {
	h := requireTracing(t)
	socket := filepath.Join(t.TempDir(), "oomtrace.sock")
	a := startAgent(t, "--socket="+socket)
	tr := newTree(t, h)
	pods := []tracePod{newTracePod(t, tr), newTracePod(t, tr), newTracePod(t, tr)}

	first := startTrace(t, "--socket", socket, "--pod-uid", pods[0].uid)
	second := startTrace(t, "--socket", socket, "--pod-uid", pods[1].uid, "--events", "oom_kill,memcg_oom")
	counted := startTrace(t, "--socket", socket, "--pod-uid", pods[0].uid, "--count", "1", "--events", "oom_kill")
	quiet := startTrace(t, "--socket", socket, "--pod-uid", newPodUID(t), "--for", "3s")

	pods[2].oom(t) // the third pod, which no session asked for
	pods[0].oom(t)
	pods[1].oom(t)

	took := counted.wait(t, 15*time.Second)
	checkOnlyPod(t, "--count 1", counted.events(t), pods[0].uid, 1)
	t.Logf("--count 1 session ended %v after it started", took.Round(time.Millisecond))

	first.waitForKill(t)
	second.waitForKill(t)
	// The third pod's kill came first: had it matched, it would be shown
	// by now. Ctrl-C ends the sessions.
	first.interrupt(t)
	second.interrupt(t)
	checkOnlyPod(t, "pod 1", first.events(t), pods[0].uid, 1)
	checkOnlyPod(t, "pod 2", second.events(t), pods[1].uid, 1)
	for _, r := range []*traceRun{first, second, counted} {
		if s := r.stderr.String(); !strings.Contains(s, "1 events in") || !strings.Contains(s, "oom_kill") || !strings.Contains(s, "0 dropped") {
			t.Errorf("summary lacks one oom_kill and no drops:\n%s", s)
		}
	}

	took = quiet.wait(t, 10*time.Second)
	if took < 3*time.Second || took > 5*time.Second {
		t.Errorf("--for 3s session ran %v, want about 3 s", took.Round(time.Millisecond))
	}
	if quiet.stdout.String() != "" || !strings.Contains(quiet.stderr.String(), "0 events in 3") || strings.Contains(quiet.stderr.String(), "by kind") {
		t.Errorf("--for 3s session: stdout %q, want none and an empty summary; stderr:\n%s", quiet.stdout.String(), quiet.stderr.String())
	}

	// The second pod's kill is over: a new session asks for the last minutes.
	late := startTrace(t, "--socket", socket, "--pod-uid", pods[1].uid, "--since", "5m", "--count", "1", "--events", "oom_kill")
	late.wait(t, 10*time.Second)
	replayed := late.events(t)
	checkOnlyPod(t, "--since 5m", replayed, pods[1].uid, 1)
	if len(replayed) == 1 && !replayed[0].Time.Before(late.started) {
		t.Errorf("--since returned a kill at %v, not from before the session started at %v", replayed[0].Time, late.started)
	}

	events, _ := a.stop(t)
	if got := len(ofKind(events, event.KindOOMKill)); got < 3 {
		t.Errorf("the agent wrote %d oom_kill lines, want the 3 pods' kills", got)
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the agent left its socket behind: %v", err)
	}
}

// Without an agent a session loads the probes itself, shows the kill, and
// leaves no BPF program or link behind.
func TestTraceStandalone(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	pod := newTracePod(t, tr)
	before := newPrograms(t, nil)
	r := startTrace(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "--cri-endpoint=none", "--kube-api=off",
		"--pod-uid", pod.uid, "--count", "1", "--events", "oom_kill", "--for", "60s")
	if !strings.Contains(r.stderr.String(), "no agent at") {
		t.Errorf("stderr does not say no agent was found:\n%s", r.stderr.String())
	}
	// The kernel's program list while the session runs, less what was
	// there before it: the session's programs (and any another test
	// loads meanwhile, which are named in a failure).
	progs := newPrograms(t, before)
	held := bpfProgramsOf(t, r.cmd.Process.Pid)
	if len(held) == 0 {
		t.Fatal("the session holds no BPF program, yet says its probes are attached")
	}
	for _, id := range held {
		if !progs[id] {
			t.Errorf("program %d the session holds is not in the kernel's list of new programs", id)
		}
	}
	pod.oom(t)
	r.wait(t, 15*time.Second)
	checkOnlyPod(t, "standalone", r.events(t), pod.uid, 1)
	// Exactly the programs the session held: others' tests may load
	// programs of the same names meanwhile. The kernel frees a program
	// after a grace period once its last reference is gone: give it one.
	exited := time.Now()
	for _, id := range held {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			info, _ := p.Info()
			p.Close()
			if time.Since(exited) > 5*time.Second {
				t.Errorf("BPF program %d (%s) still loaded 5 s after the session ended", id, info.Name)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("the session's programs were gone %v after it exited", time.Since(exited).Round(time.Millisecond))
	t.Logf("the session's %d BPF programs are gone (%d new in the kernel's list while it ran)", len(held), len(progs))
}

// A session without an agent filtered to one pod, by --cgroup or by
// --pod-uid, has its probes drop the other pod's kill in the kernel: it
// shows its pod's kill only, and its summary counts what the kernel
// filtered.
func TestTraceStandaloneKernelFilter(t *testing.T) {
	h := requireTracing(t)
	for _, by := range []string{"cgroup", "pod-uid"} {
		t.Run(by, func(t *testing.T) {
			tr := newTree(t, h)
			mine, other := newTracePod(t, tr), newTracePod(t, tr)
			podCgroup := "/kubepods/burstable/pod" + mine.uid
			value := podCgroup
			if by == "pod-uid" {
				value = mine.uid
			}
			r := startTrace(t, "--socket", "", "--cri-endpoint=none", "--kube-api=off",
				"--"+by, value, "--events", "oom_kill", "--for", "60s")
			other.oom(t)
			mine.oom(t)
			r.waitForKill(t)
			r.interrupt(t)
			checkOnlyPod(t, by, r.events(t), mine.uid, 1)
			m := regexp.MustCompile(`(\d+) filtered in the kernel \(cgroup (\S+)\)`).FindStringSubmatch(r.stderr.String())
			if m == nil {
				t.Fatalf("the summary does not say what the kernel filtered:\n%s", r.stderr.String())
			}
			if m[2] != podCgroup {
				t.Errorf("the kernel filtered on cgroup %s, want the pod's %s", m[2], podCgroup)
			}
			if n, _ := strconv.Atoi(m[1]); n < 1 {
				t.Errorf("%s records filtered in the kernel, want at least the other pod's kill", m[1])
			}
			t.Logf("summary: %s", m[0])
		})
	}
}

// newPrograms lists the kernel's BPF programs not in before.
func newPrograms(t *testing.T, before map[ebpf.ProgramID]bool) map[ebpf.ProgramID]bool {
	t.Helper()
	ids := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids
		}
		if err != nil {
			t.Fatalf("list BPF programs: %v", err)
		}
		if !before[next] {
			ids[next] = true
		}
		id = next
	}
}

// bpfProgramsOf lists the ids of the BPF programs process pid holds,
// itself or through a link, from its file descriptors.
func bpfProgramsOf(t *testing.T, pid int) []ebpf.ProgramID {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fdinfo")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ebpf.ProgramID]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					seen[ebpf.ProgramID(id)] = true
				}
			}
		}
	}
	var ids []ebpf.ProgramID
	for id := range seen {
		ids = append(ids, id)
	}
	return ids
}

// In a real terminal (tmux, 120 columns) a session prints the table by
// default: the rows line up under the header, a long cgroup path is
// shortened with an ellipsis, and no row is wrapped.
func TestTraceTableInTerminal(t *testing.T) {
	h := requireTracing(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("skipped: no tmux to run a terminal in")
	}
	socket := filepath.Join(t.TempDir(), "oomtrace.sock")
	a := startAgent(t, "--socket="+socket)
	tr := newTree(t, h)
	pod := newTracePod(t, tr)
	// A server of its own, its socket in the test's directory, so no
	// user's tmux is touched and nothing is left behind.
	server := filepath.Join(t.TempDir(), "tmux.sock")
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", server}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	const width = 120
	run("new-session", "-d", "-x", strconv.Itoa(width), "-y", "20",
		oomtraceBin+" trace --socket "+socket+" --pod-uid "+pod.uid+" --count 1 --for 60s; sleep 60")
	t.Cleanup(func() { exec.Command(tmux, "-S", server, "kill-server").Run() })
	screen := func() string { return run("capture-pane", "-p") }
	waitScreen := func(what string) string {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if s := screen(); strings.Contains(s, what) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q:\n%s", what, screen())
			}
		}
	}
	waitScreen("following the agent")
	pod.oom(t)
	s := waitScreen("1 events in")
	t.Logf("the terminal:\n%s", s)
	var header, row string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "TIME "):
			header = l
		case row == "" && strings.Contains(l, " oom_kill "): // not the summary's
			row = l
		}
	}
	if header == "" || row == "" {
		t.Fatalf("no table header or oom_kill row on the terminal:\n%s", s)
	}
	runes := []rune(row)
	if len(runes) > width || len([]rune(header)) > width {
		t.Errorf("a line longer than the terminal's %d columns", width)
	}
	for _, col := range []string{"EVENT", "NAMESPACE", "POD", "CONTAINER", "PID", "COMM", "MEMORY", "DIAGNOSIS"} {
		at := len([]rune(header[:strings.Index(header, col)]))
		if at >= len(runes) || runes[at-1] != ' ' || runes[at] == ' ' {
			t.Errorf("column %s does not start at %d in the row %q", col, at, row)
		}
	}
	// Nothing names the made-up pod: its UID stands in, too long for
	// the narrowed POD column.
	if strings.Contains(row, pod.uid) || !strings.Contains(row, pod.uid[:4]) || !strings.Contains(row, "…") || !strings.Contains(row, pod.uid[len(pod.uid)-5:]+" ") {
		t.Errorf("the pod's UID %s is not shortened with an ellipsis, its end kept: %q", pod.uid, row)
	}
	a.stop(t)
}
