// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
)

// The faults an agent meets on a real node, each made for real: a cgroup
// gone before it is read, kernel symbols or memory.stat it cannot read,
// a stdout that fails or stops, signals in the middle of a storm.

// signal sends sig to the agent.
func (a *agentRun) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal agent %v: %v", sig, err)
	}
}

// paused stops the agent (SIGSTOP): the kernel keeps writing records into
// the ring buffer, and nothing reads them until resume. It is resumed at
// the end of the test in any case.
func (a *agentRun) paused(t *testing.T) (resume func()) {
	t.Helper()
	a.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { a.cmd.Process.Signal(syscall.SIGCONT) })
	return func() { a.signal(t, syscall.SIGCONT) }
}

// inMountNamespace returns a command prefix that runs setup (shell) in a
// mount namespace of its own, then execs its arguments there: what setup
// mounts is seen by that process only, and goes with it.
func inMountNamespace(t *testing.T, setup string) []string {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("skipped: needs unshare (util-linux) for a private mount namespace: %v", err)
	}
	return []string{unshare, "--mount", "--propagation", "private", "sh", "-euc", setup + `; exec "$@"`, "sh"}
}

// podContainer makes a pod and its container cgroup, the container's
// limit 16 MiB, and returns the container's path below the hierarchy and
// its directory.
func podContainer(t *testing.T, tr *tree) (uid, cid, rel, dir string) {
	t.Helper()
	uid, cid = newPodUID(t), newContainerID(t)
	pod := "/kubepods/burstable/pod" + uid
	tr.mkdir(pod, 0)
	rel = pod + "/" + cid
	return uid, cid, rel, tr.mkdir(rel, 16<<20)
}

// killOne runs a 32 MiB process in the 16 MiB container dir and returns
// its pid once the kernel has killed it.
func killOne(t *testing.T, dir string) uint32 {
	t.Helper()
	p := startHog(t, dir, 32, "exit")
	if err := p.wait(t); !killedBySIGKILL(err) {
		t.Fatalf("32 MiB process in a 16 MiB cgroup: exit %v, want killed by SIGKILL", err)
	}
	return p.pid()
}

// killOf returns the oom_kill event of the victim pid.
func killOf(t *testing.T, events []*event.Event, pid uint32) *event.Event {
	t.Helper()
	var found *event.Event
	for _, e := range ofKind(events, event.KindOOMKill) {
		if e.Victim.PID == pid {
			if found != nil {
				t.Fatalf("victim %d reported twice", pid)
			}
			found = e
		}
	}
	if found == nil {
		t.Fatalf("no oom_kill line for victim %d among %d lines", pid, len(events))
	}
	return found
}

// The container's cgroup is removed between the kill and the moment the
// agent reads it (the agent is stopped meanwhile): the line still comes,
// with what the kernel captured, the pod named from the captured path,
// and says why memory.stat is missing.
func TestCgroupRemovedBeforeEnrichment(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	uid, cid, rel, dir := podContainer(t, tr)
	a := startAgent(t)
	resume := a.paused(t)
	pid := killOne(t, dir)
	tr.removeOne(dir)
	resume()
	events, _ := a.stop(t)

	e := killOf(t, events, pid)
	if e.Victim.Cgroup != rel || e.Memcg == nil || e.Memcg.Path != rel {
		t.Fatalf("victim cgroup %q memcg %+v, want both %q", e.Victim.Cgroup, e.Memcg, rel)
	}
	if e.Memcg.Stat != nil || !strings.Contains(e.Memcg.StatError, "removed") {
		t.Errorf("memcg stat %+v error %q: want no stat and an error saying the cgroup was removed", e.Memcg.Stat, e.Memcg.StatError)
	}
	if e.Memcg.LimitBytes != 16<<20 {
		t.Errorf("memcg limit %d: the kernel's numbers are kept, want %d", e.Memcg.LimitBytes, 16<<20)
	}
	if e.K8s == nil || e.K8s.PodUID != uid || e.K8s.ContainerID != cid {
		t.Errorf("k8s %+v: want pod %s container %s from the captured path", e.K8s, uid, cid)
	}
	if len(e.Diagnosis) == 0 {
		t.Error("no diagnosis: the limit that fired is known without the cgroup")
	}
}

// addressFrame is how a kernel stack frame looks when it cannot be named.
var addressFrame = regexp.MustCompile(`^0x[0-9a-f]+$`)

// /proc/kallsyms as a process without CAP_SYSLOG reads it (every address
// zero), bind-mounted over the real one for the agent alone: stacks come
// as addresses, and the agent says once that it cannot name them.
func TestKallsymsUnreadable(t *testing.T) {
	h := requireTracing(t)
	hidden := filepath.Join(t.TempDir(), "kallsyms")
	if err := os.WriteFile(hidden, []byte("0000000000000000 T _text\n0000000000000000 T oom_kill_process\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrap := inMountNamespace(t, "mount --bind "+hidden+" /proc/kallsyms")
	tr := newTree(t, h)
	_, _, _, dir := podContainer(t, tr)
	a, err := launchAgentVia(t, agentReadyTimeout, nil, wrap)
	if err != nil {
		t.Fatal(err)
	}
	pids := []uint32{killOne(t, dir), killOne(t, dir)}
	events, _ := a.stop(t)

	for _, pid := range pids {
		e := killOf(t, events, pid)
		if len(e.Stack) < 3 {
			t.Errorf("victim %d: stack %v, want the frames as addresses", pid, e.Stack)
		}
		for _, f := range e.Stack {
			if !addressFrame.MatchString(f) {
				t.Errorf("victim %d: frame %q, want a bare address", pid, f)
				break
			}
		}
	}
	var said []string
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(line, "kallsyms") {
			said = append(said, line)
		}
	}
	if len(said) != 1 {
		t.Errorf("%d log lines mention kallsyms, want exactly one:\n%s", len(said), strings.Join(said, "\n"))
	}
}

// memory.stat of the OOM's cgroup cannot be opened (a write-only file of
// the same cgroup bind-mounted over it, for the agent alone): the line
// still comes, with the kernel's numbers, the reason in stat_error, and a
// diagnosis.
func TestMemoryStatUnreadable(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	_, _, rel, dir := podContainer(t, tr)
	// A control file with no read handler: opening it to read fails.
	writeOnly := "memory.reclaim"
	if h.Version == 1 {
		writeOnly = "memory.force_empty"
	}
	if _, err := os.ReadFile(filepath.Join(dir, writeOnly)); err == nil {
		t.Skipf("skipped: %s is readable on this kernel: no unreadable file to put over memory.stat", writeOnly)
	}
	wrap := inMountNamespace(t, fmt.Sprintf("mount --bind %s %s", filepath.Join(dir, writeOnly), filepath.Join(dir, "memory.stat")))
	a, err := launchAgentVia(t, agentReadyTimeout, nil, wrap)
	if err != nil {
		t.Fatal(err)
	}
	pid := killOne(t, dir)
	events, _ := a.stop(t)

	e := killOf(t, events, pid)
	if e.Memcg == nil || e.Memcg.Path != rel {
		t.Fatalf("memcg %+v, want %q", e.Memcg, rel)
	}
	if e.Memcg.Stat != nil || e.Memcg.StatError == "" || strings.Contains(e.Memcg.StatError, "removed") {
		t.Errorf("memcg stat %+v error %q: want no stat and the read error (not a claim that the cgroup was removed)", e.Memcg.Stat, e.Memcg.StatError)
	}
	if e.Memcg.LimitBytes != 16<<20 || e.Memcg.UsageBytes == 0 {
		t.Errorf("memcg limit %d usage %d: want the kernel's numbers", e.Memcg.LimitBytes, e.Memcg.UsageBytes)
	}
	if len(e.Diagnosis) == 0 {
		t.Error("no diagnosis")
	}
}

// waitForMetric scrapes addr until the sum of the series of name matching
// every filter reaches min, or 15 s pass; it returns the last sum.
func waitForMetric(t *testing.T, addr, name string, min float64, filters ...string) float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, got := scrapeMetrics(t, addr)
		v := got.Sum(name, filters...)
		if v >= min || time.Now().After(deadline) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stdout is a pipe whose reader has gone (a log collector that died):
// the agent does not die of SIGPIPE; each line that cannot be written is
// counted, the kills are still counted in /metrics, and it stops cleanly.
func TestStdoutClosed(t *testing.T) {
	h := requireTracing(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	tr := newTree(t, h)
	_, _, _, dir := podContainer(t, tr)
	addr := freeLocalAddr(t)
	a, err := launchAgentTo(t, agentReadyTimeout, w, "--metrics-addr="+addr)
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // the agent holds it now
	const kills = 3
	for range kills {
		killOne(t, dir)
	}
	if n := waitForMetric(t, addr, "oomtrace_event_write_errors_total", kills); n < kills {
		t.Errorf("oomtrace_event_write_errors_total = %v after %d kills with stdout's reader gone, want at least %d", n, kills, kills)
	}
	if n := waitForMetric(t, addr, "oomtrace_oom_kills_total", kills); n < kills {
		t.Errorf("oomtrace_oom_kills_total = %v, want at least %d: the kills happened", n, kills)
	}
	select {
	case <-a.exited:
		t.Fatalf("the agent exited (%v) when stdout's reader went; stderr:\n%s", a.waitErr, a.stderr.String())
	default:
	}
	_, stats := a.stop(t)
	if stats.WriteErrors < kills {
		t.Errorf("stop summary: %d write errors, want at least %d", stats.WriteErrors, kills)
	}
}

// stdout is a pipe nobody reads (a container runtime that stopped
// reading): lines wait in a bounded queue, what does not fit is dropped
// and counted, memory stays bounded, /metrics is still served, and
// SIGTERM still ends the agent in bounded time, saying what it could not
// write.
func TestStdoutBlocked(t *testing.T) {
	h := requireTracing(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	tr := newTree(t, h)
	_, _, _, dir := podContainer(t, tr)
	addr := freeLocalAddr(t)
	a, err := launchAgentTo(t, agentReadyTimeout, w, "--metrics-addr="+addr, "--queue-size=4")
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	rss := watchRSS(t, a)
	// A pipe holds 64 KiB, about 15 lines; the queue 4 more.
	const kills = 40
	storm(t, dir, kills)
	lost := waitForMetric(t, addr, "oomtrace_events_lost_total", 1, `stage="output_queue"`)
	if lost < 1 {
		t.Errorf("oomtrace_events_lost_total{stage=\"output_queue\"} = %v after %d kills with stdout blocked, want drops counted", lost, kills)
	}
	rss.check(t, "stdout blocked", false)

	// Stop while stdout is still blocked.
	a.signal(t, syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("agent still running 20 s after SIGTERM with stdout blocked; stderr:\n%s", a.stderr.String())
	}
	if a.waitErr != nil {
		t.Errorf("agent exited with %v, want 0; stderr:\n%s", a.waitErr, a.stderr.String())
	}
	if !strings.Contains(a.stderr.String(), "stdout blocked") {
		t.Errorf("the agent did not say it stopped with lines unwritten; stderr:\n%s", a.stderr.String())
	}
	// What reached the pipe is whole lines, as many as the summary says,
	// and the start of the one whose write was blocked (a line longer
	// than the pipe's atomic write).
	w.Close()
	all, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	whole := all[:bytes.LastIndexByte(all, '\n')+1]
	schema := eventtest.Schema(t)
	lines := 0
	for _, line := range bytes.SplitAfter(whole, []byte("\n")) {
		if len(line) > 0 {
			eventtest.Validate(t, schema, line)
			lines++
		}
	}
	stats := stoppedStats(t, a)
	var written uint64
	for _, n := range stats.Events {
		written += n
	}
	if uint64(lines) != written {
		t.Errorf("%d lines in the pipe, the stop summary says %d written", lines, written)
	}
	if stats.OutputDrops == 0 || written+stats.OutputDrops < kills {
		t.Errorf("stop summary %+v: want %d kills written or counted as dropped", stats, kills)
	}
}

// stoppedStats is the agent's stop summary (its "stopped" log line).
func stoppedStats(t *testing.T, a *agentRun) agentStats {
	t.Helper()
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if !strings.Contains(line, `"msg":"stopped"`) {
			continue
		}
		var l struct {
			Stats agentStats `json:"stats"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("stopped line %q: %v", line, err)
		}
		return l.Stats
	}
	t.Fatalf("agent logged no \"stopped\" line; stderr:\n%s", a.stderr.String())
	return agentStats{}
}

// SIGTERM arrives while kills wait in the ring buffer unread (the agent
// is stopped as they happen, as a busy CPU would leave it): every one of
// them is written before the agent exits.
func TestSIGTERMWritesWhatIsBuffered(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	_, _, _, dir := podContainer(t, tr)
	a := startAgent(t)
	resume := a.paused(t)
	const kills = 20
	storm(t, dir, kills)
	counted := oomKillCount(t, h, dir)
	a.signal(t, syscall.SIGTERM)
	resume()
	events, stats := a.stop(t)

	var ours int
	for _, e := range ofKind(events, event.KindOOMKill) {
		if filepath.Join(h.Mount, e.Victim.Cgroup) == dir {
			ours++
		}
	}
	if uint64(ours) != counted || counted != kills {
		t.Errorf("%d oom_kill lines for the container; the kernel counted %d kills there (want %d), all in the ring buffer at SIGTERM", ours, counted, kills)
	}
	if stats.KernelDrops.RingBufFull != 0 || stats.QueueDrops != 0 || stats.OutputDrops != 0 {
		t.Errorf("lost events: %+v", stats)
	}
}

// SIGTERM in the middle of a live storm: every kill the kernel had
// counted when the signal was sent is written before the agent exits,
// and nothing is lost.
func TestSIGTERMDuringStorm(t *testing.T) {
	h := requireTracing(t)
	tr := newTree(t, h)
	s := newPodStorm(t, tr, 5)
	a := startAgent(t)
	bin := memhog(t)
	stormDone := make(chan error, 1)
	go func() { stormDone <- s.runIn(bin, 20) }()
	// Let the storm get going, then stop the agent in the middle of it.
	var counted uint64
	for deadline := time.Now().Add(time.Minute); counted < 20; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d kills a minute into the storm", counted)
		}
		counted = s.kernelKills(t)
	}
	events, stats := a.stop(t) // SIGTERM
	if err := <-stormDone; err != nil {
		t.Fatal(err)
	}
	lines := uint64(len(s.inStorm(ofKind(events, event.KindOOMKill))))
	if lines < counted {
		t.Errorf("%d oom_kill lines for the storm; the kernel had counted %d kills when SIGTERM was sent", lines, counted)
	}
	if all := s.kernelKills(t); lines > all {
		t.Errorf("%d oom_kill lines, more than the %d kills of the whole storm", lines, all)
	}
	if stats.KernelDrops.RingBufFull != 0 || stats.QueueDrops != 0 || stats.OutputDrops != 0 {
		t.Errorf("lost events: %+v", stats)
	}
	t.Logf("SIGTERM after %d kills: %d lines written (the storm went on to %d)", counted, lines, s.kernelKills(t))
}

// bpfObjects are the kernel's ids of a process's BPF programs, maps and
// links, from the fdinfo of the descriptors it holds.
type bpfObjects struct{ progs, maps, links []uint32 }

func bpfObjectsOf(t *testing.T, pid int) bpfObjects {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var o bpfObjects
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		fields := map[string]uint32{}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
				fields[k] = uint32(n)
			}
		}
		// A link's fdinfo names its program too: the link is what it is.
		switch {
		case fields["link_id"] != 0:
			o.links = append(o.links, fields["link_id"])
		case fields["prog_id"] != 0:
			o.progs = append(o.progs, fields["prog_id"])
		case fields["map_id"] != 0:
			o.maps = append(o.maps, fields["map_id"])
		}
	}
	return o
}

// left returns the objects of o the kernel still has.
func (o bpfObjects) left() []string {
	var out []string
	gone := func(err error) bool { return errors.Is(err, os.ErrNotExist) }
	for _, id := range o.progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); !gone(err) {
			if p != nil {
				p.Close()
			}
			out = append(out, fmt.Sprintf("program %d (%v)", id, err))
		}
	}
	for _, id := range o.maps {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); !gone(err) {
			if m != nil {
				m.Close()
			}
			out = append(out, fmt.Sprintf("map %d (%v)", id, err))
		}
	}
	for _, id := range o.links {
		if l, err := link.NewFromID(link.ID(id)); !gone(err) {
			if l != nil {
				l.Close()
			}
			out = append(out, fmt.Sprintf("link %d (%v)", id, err))
		}
	}
	return out
}

// SIGKILL leaves nothing behind: none of the agent's programs, maps or
// links is attached, pinned or loaded a moment later.
func TestSIGKILLLeavesNothing(t *testing.T) {
	requireTracing(t)
	a := startAgent(t)
	objs := bpfObjectsOf(t, a.cmd.Process.Pid)
	if len(objs.progs) == 0 || len(objs.maps) == 0 || len(objs.links) == 0 {
		t.Fatalf("agent holds programs %v maps %v links %v: want some of each", objs.progs, objs.maps, objs.links)
	}
	a.signal(t, syscall.SIGKILL)
	<-a.exited
	// The kernel frees them once the last reference is dropped, after an
	// RCU grace period.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = objs.left(); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("10 s after SIGKILL the kernel still has the agent's %s", strings.Join(left, ", "))
	}
	t.Logf("the agent held %d programs, %d maps, %d links: all gone", len(objs.progs), len(objs.maps), len(objs.links))
}
