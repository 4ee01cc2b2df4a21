// SPDX-License-Identifier: Apache-2.0

// Package hosttest runs the oomtrace binary on this machine against real
// memory cgroup OOMs, in cgroup trees laid out as kubelet lays them out.
// OOMs happen only inside cgroups with small limits; every cgroup and
// process a test makes is removed when it ends, also when it fails.
package hosttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

var (
	binDir      string // holds what TestMain and buildMemhog build
	oomtraceBin string

	memhogOnce sync.Once
	memhogBin  string
	memhogErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oomtrace-hosttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // the CLI test runs it as an unprivileged user too
	binDir, oomtraceBin = dir, filepath.Join(dir, "oomtrace")
	build := exec.Command("go", "build", "-o", oomtraceBin, "../../cmd/oomtrace")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build oomtrace:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// memhog returns internal/memhog built for this package's tests, once, on
// first use: -short runs need none.
func memhog(t *testing.T) string {
	t.Helper()
	memhogOnce.Do(func() {
		memhogBin = filepath.Join(binDir, "memhog")
		memhogErr = vmtest.BuildStatic(context.Background(), "../..", "./internal/memhog", memhogBin)
	})
	if memhogErr != nil {
		t.Fatal(memhogErr)
	}
	return memhogBin
}

// requireTracing skips unless this host can run the agent for real.
func requireTracing(t *testing.T) cgroup.Hierarchy {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped: -short: live OOMs on this machine run in the full suite (make test)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) to load BPF programs and make memory cgroups")
	}
	h, err := cgroup.FindMemoryHierarchy()
	if err != nil {
		t.Skipf("skipped: memory cgroup controller: %v", err)
	}
	if r := probe.Check(probe.TierNone); !r.CanTrace {
		t.Skipf("skipped: %s (%+v)", r.Conclusion, r.Hooks)
	}
	return h
}

// tree makes cgroups under the memory hierarchy and removes them at the
// end of the test.
type tree struct {
	t    *testing.T
	h    cgroup.Hierarchy
	made []string // absolute paths, in creation order
}

func newTree(t *testing.T, h cgroup.Hierarchy) *tree {
	tr := &tree{t: t, h: h}
	t.Cleanup(tr.remove)
	return tr
}

// mkdir makes every missing directory of rel (e.g. "/kubepods/burstable")
// and, when limit > 0, sets the last one's memory limit in bytes.
func (tr *tree) mkdir(rel string, limit int64) string {
	tr.t.Helper()
	dir := tr.h.Mount
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		if tr.h.Version == 2 {
			// cgroup v2: the parent must hand the memory controller down.
			_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0)
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err == nil {
			tr.made = append(tr.made, dir)
		} else if !errors.Is(err, os.ErrExist) {
			tr.t.Fatalf("make cgroup %s: %v", dir, err)
		}
	}
	if limit > 0 {
		tr.setLimit(dir, limit)
	}
	return dir
}

// setLimit sets dir's memory limit in bytes.
func (tr *tree) setLimit(dir string, limit int64) {
	tr.t.Helper()
	file := "memory.max"
	if tr.h.Version == 1 {
		file = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		tr.t.Fatalf("set %s/%s: %v", dir, file, err)
	}
}

// usage is dir's memory usage in bytes.
func (tr *tree) usage(dir string) int64 {
	tr.t.Helper()
	file := "memory.current"
	if tr.h.Version == 1 {
		file = "memory.usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		tr.t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		tr.t.Fatalf("%s/%s: %v", dir, file, err)
	}
	return n
}

// remove kills what still runs in the cgroups mkdir made and deletes
// them, deepest first. A killed task takes a moment to leave its cgroup,
// so each rmdir is retried briefly.
func (tr *tree) remove() {
	for i := len(tr.made) - 1; i >= 0; i-- {
		dir := tr.made[i]
		killProcs(dir)
		var err error
		for try := 0; try < 50; try++ {
			if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			tr.t.Errorf("remove cgroup %s: %v", dir, err)
		}
	}
}

// killProcs SIGKILLs every process in the cgroup dir.
func killProcs(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// removeOne removes one cgroup made by mkdir now (a container that ends).
func (tr *tree) removeOne(dir string) {
	tr.t.Helper()
	for try := 0; ; try++ {
		err := os.Remove(dir)
		if err == nil {
			break
		}
		if try == 50 {
			tr.t.Fatalf("remove cgroup %s: %v", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, d := range tr.made {
		if d == dir {
			tr.made = append(tr.made[:i], tr.made[i+1:]...)
			break
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// hog is a memory hog process in a cgroup.
type hog struct {
	cmd     *exec.Cmd
	done    chan error
	waitErr error // what wait returned
}

// startHog starts a hog in the cgroup dir (mode as in hogOpts). With hold
// it keeps its memory until killed, and startHog returns once it has it all.
func startHog(t *testing.T, dir string, mib int, mode string) *hog {
	t.Helper()
	return startHogWith(t, hogOpts{dir: dir, mib: mib, mode: mode})
}

// hogOpts shape a hog (internal/memhog) like a container's process.
type hogOpts struct {
	dir string
	mib int
	// hold: keep the memory until killed; exit: exit once it is touched;
	// paced: touch a MiB every 5 ms, then exit, so a victim killed meanwhile
	// has time to free its memory (without it the kernel can OOM again
	// while the first victim's last pages still wait in its unmap batch:
	// seen here as a second kill 5 ms after the first, of the allocating
	// process); init: pid 1 of a new pid namespace running an exit hog.
	mode string
	adj  string // oom_score_adj; empty is 0
	// write writes writeMiB to this file first (a tmpfs: shmem).
	write    string
	writeMiB int
	// privateTmpfs mounts a tmpfs here in a mount namespace of its own.
	privateTmpfs string
	// sleeper leaves a small process of the container behind the hog.
	sleeper bool
}

// args are memhog's arguments for o.
func (o hogOpts) args() []string {
	args := []string{"hog", "-cgroup", o.dir, "-mib", strconv.Itoa(o.mib)}
	switch o.mode {
	case "hold", "paced", "init":
		args = append(args, "-"+o.mode)
	}
	adj := o.adj
	if adj == "" {
		adj = "0"
	}
	args = append(args, "-adj", adj)
	if o.write != "" {
		args = append(args, "-write", o.write, "-write-mib", strconv.Itoa(o.writeMiB))
	}
	if o.privateTmpfs != "" {
		args = append(args, "-private-tmpfs", o.privateTmpfs)
	}
	if o.sleeper {
		args = append(args, "-sleeper")
	}
	return args
}

func startHogWith(t *testing.T, o hogOpts) *hog {
	t.Helper()
	hold := o.mode == "hold"
	cmd := exec.Command(memhog(t), o.args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if o.privateTmpfs != "" {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNS
	}
	if o.mode == "init" {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	}
	mib := o.mib
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hog: %v", err)
	}
	h := &hog{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() { h.cmd.Process.Kill(); <-h.done })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		for sc.Scan() {
		}
		h.done <- cmd.Wait()
		close(h.done)
	}()
	if hold {
		select {
		case ok := <-ready:
			if !ok {
				t.Fatalf("hog of %d MiB died before it held its memory", mib)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("hog of %d MiB not ready after 30 s", mib)
		}
	}
	return h
}

func (h *hog) pid() uint32 { return uint32(h.cmd.Process.Pid) }

// wait returns the hog's exit: nil, or an *exec.ExitError.
func (h *hog) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.waitErr = err
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("hog %d still running after 60 s", h.pid())
		return nil
	}
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// agentRun is a running `oomtrace agent`.
type agentRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	exited         chan struct{} // closed once the agent has exited
	waitErr        error         // what Wait returned, once exited is closed
	readyAfter     time.Duration // from the start to the ready file
}

// agentReadyTimeout bounds the wait for the agent's probes.
const agentReadyTimeout = 30 * time.Second

// startAgent runs the agent and returns once its probes are attached.
func startAgent(t *testing.T, args ...string) *agentRun {
	t.Helper()
	a, err := launchAgent(t, agentReadyTimeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// launchAgent starts the agent and waits until it is ready, it exits, or
// timeout passes; an agent that exits early is reported at once, with its
// stderr. The agent is killed at the end of the test if still running.
func launchAgent(t *testing.T, timeout time.Duration, args ...string) (*agentRun, error) {
	return launchAgentTo(t, timeout, nil, args...)
}

// launchAgentTo is launchAgent with the agent's stdout on w (nil: kept
// for stop to read).
func launchAgentTo(t *testing.T, timeout time.Duration, w io.Writer, args ...string) (*agentRun, error) {
	return launchAgentVia(t, timeout, w, nil, args...)
}

// launchAgentVia is launchAgentTo with the agent started by the command
// wrap, which must exec its arguments in the same process (e.g. unshare
// and a shell that prepares a mount namespace, then execs the agent).
func launchAgentVia(t *testing.T, timeout time.Duration, w io.Writer, wrap []string, args ...string) (*agentRun, error) {
	ready := filepath.Join(t.TempDir(), "ready")
	// No health listener unless a test asks for one: agents run in
	// parallel, beside any agent on this node, and must not compete for
	// its port. No names: the pods of these cgroup trees are made up, and
	// no runtime or API knows them. No stream socket unless a test asks
	// for one, for the same reason as the port.
	argv := append([]string{oomtraceBin, "agent", "--ready-file", ready, "--node-name", "test-node", "--metrics-addr=",
		"--cri-endpoint=none", "--kube-api=off", "--socket="}, args...)
	argv = append(slices.Clone(wrap), argv...)
	a := &agentRun{cmd: exec.Command(argv[0], argv[1:]...), exited: make(chan struct{})}
	a.cmd.Stdout, a.cmd.Stderr = &a.stdout, &a.stderr
	if w != nil {
		a.cmd.Stdout = w
	}
	started := time.Now()
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	// Only Wait fills in ProcessState: without a waiter an agent that died
	// would look alive until the timeout.
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
	})
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Polled often enough that the footprint benchmark can time the
	// start from the return.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(ready); err == nil {
			a.readyAfter = time.Since(started)
			return a, nil
		}
		select {
		case <-a.exited:
			return nil, fmt.Errorf("agent exited before it was ready (%v); stderr:\n%s", a.waitErr, a.stderr.String())
		case <-deadline.C:
			a.cmd.Process.Kill()
			<-a.exited // stderr is complete only then
			return nil, fmt.Errorf("agent not ready after %v; stderr:\n%s", timeout, a.stderr.String())
		case <-tick.C:
		}
	}
}

// An agent that exits at once (here on a usage error, so no root is
// needed) is reported as soon as it exits, with what it said, not after the
// whole ready timeout.
func TestLaunchAgentReportsEarlyExit(t *testing.T) {
	start := time.Now()
	_, err := launchAgent(t, agentReadyTimeout, "--log-level", "loud")
	took := time.Since(start)
	if err == nil {
		t.Fatal("launchAgent returned no error for an agent that exited on a usage error")
	}
	if took > 5*time.Second {
		t.Errorf("the exit was reported after %v, want at once (the timeout is %v)", took.Round(time.Millisecond), agentReadyTimeout)
	}
	for _, want := range []string{"exited before it was ready", "exit status 2", `--log-level "loud"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// agentStats is the "stopped" log line's stats.
type agentStats struct {
	Events      map[string]uint64 `json:"events"`
	QueueDrops  uint64            `json:"queue_drops"`
	WriteErrors uint64            `json:"write_errors"`
	OutputDrops uint64            `json:"output_drops"`
	KernelDrops struct {
		RingBufFull        uint64            `json:"ringbuf_full"`
		RingBufFullByEvent map[string]uint64 `json:"ringbuf_full_by_event"`
	} `json:"kernel"`
}

// stop sends SIGTERM, checks the agent exits 0 with every stdout line a
// schema-valid event, and returns the events and the agent's own counts.
func (a *agentRun) stop(t *testing.T) ([]*event.Event, agentStats) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal agent: %v", err)
	}
	select {
	case <-a.exited:
		if a.waitErr != nil {
			t.Fatalf("agent exited with %v on SIGTERM; stderr:\n%s", a.waitErr, a.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent still running 20 s after SIGTERM; stderr:\n%s", a.stderr.String())
	}

	schema := eventtest.Schema(t)
	var events []*event.Event
	for _, line := range bytes.Split(bytes.TrimSuffix(a.stdout.Bytes(), []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		events = append(events, eventtest.Validate(t, schema, line))
	}

	var stats agentStats
	found := false
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		var l struct {
			Msg   string     `json:"msg"`
			Stats agentStats `json:"stats"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "stopped" {
			stats, found = l.Stats, true
		}
	}
	if !found {
		t.Fatalf("agent logged no \"stopped\" line with its stats; stderr:\n%s", a.stderr.String())
	}
	return events, stats
}

func ofKind(events []*event.Event, kind string) []*event.Event {
	var out []*event.Event
	for _, e := range events {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// vmstatOOMKills reads the kernel's count of OOM kills.
func vmstatOOMKills(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("skipped: /proc/vmstat has no oom_kill counter (kernel before 4.13)")
	return 0
}
