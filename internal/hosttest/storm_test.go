// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
)

// podStorm is a storm of OOM kills spread over pods laid out as kubelet
// lays them out: one container cgroup of stormLimitMiB per pod, whose
// init (memhog -init -respawn) runs children of stormHogMiB one after
// another, each killed at the limit.
// Small, so that a kill costs little besides the kill: a process start
// and a few MiB of page faults.
const stormLimitMiB, stormHogMiB = 8, 12

type podStorm struct {
	h          cgroup.Hierarchy
	containers []string // the containers' cgroup directories
	took       time.Duration
}

// newPodStorm makes the pods' cgroups; run starts the kills.
func newPodStorm(t *testing.T, tr *tree, pods int) *podStorm {
	t.Helper()
	s := &podStorm{h: tr.h}
	for range pods {
		pod := "/kubepods/burstable/pod" + newPodUID(t)
		tr.mkdir(pod, 0)
		s.containers = append(s.containers, tr.mkdir(pod+"/"+newContainerID(t), stormLimitMiB<<20))
	}
	return s
}

// run kills perPod processes in every pod, the pods in parallel, and
// returns once every init has run all its children. The pace is the
// machine's: one busy with other work runs the processes slower, hence a
// bound well above the minute 500 kills are meant to take.
func (s *podStorm) run(t *testing.T, perPod int) {
	t.Helper()
	if err := s.runIn(memhog(t), perPod); err != nil {
		t.Fatal(err)
	}
}

// runIn is run for any goroutine: it returns what went wrong.
func (s *podStorm) runIn(bin string, perPod int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(s.containers))
	for i, dir := range s.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = runRespawningInit(ctx, bin, dir, perPod)
		}()
	}
	wg.Wait()
	s.took = time.Since(start)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("storm in %s: %w", s.containers[i], err)
		}
	}
	return nil
}

// runRespawningInit runs memhog as a container's init in dir that runs n
// children of stormHogMiB, each OOM-killed, and returns once they have run.
func runRespawningInit(ctx context.Context, bin, dir string, n int) error {
	cmd := exec.CommandContext(ctx, bin, "hog", "-cgroup", dir, "-mib", strconv.Itoa(stormHogMiB), "-adj", "0", "-init", "-respawn", "-respawn-max", strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The init stays after its children have run (a container that
	// keeps running): it is killed here once they have.
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), "children run") {
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%d children not run in time", n)
	}
	return fmt.Errorf("memhog ended before its %d children had run", n)
}

// kernelKills is the kernel's count of OOM kills in the storm's
// containers (on cgroup v1 a kill counts in the victim's own cgroup).
func (s *podStorm) kernelKills(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	for _, dir := range s.containers {
		n += oomKillCount(t, s.h, dir)
	}
	return n
}

// inStorm keeps the events whose victim was in one of the storm's
// containers.
func (s *podStorm) inStorm(events []*event.Event) []*event.Event {
	var out []*event.Event
	for _, e := range events {
		if e.Victim == nil {
			continue
		}
		for _, dir := range s.containers {
			if filepath.Join(s.h.Mount, e.Victim.Cgroup) == dir {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// 500 OOM kills across 20 pods within a minute: the agent writes a line
// for every kill the kernel counted, each victim once, and loses none.
func TestOOMKillStorm500Kills20Pods(t *testing.T) {
	h := requireTracing(t)
	const pods, perPod = 20, 25
	tr := newTree(t, h)
	s := newPodStorm(t, tr, pods)

	a := startAgent(t)
	rss := watchRSS(t, a)
	before := vmstatOOMKills(t)
	s.run(t, perPod)
	after := vmstatOOMKills(t)
	// The figure against the target is the footprint benchmark's: with
	// other kills on the machine it is within a few MiB of it.
	rss.check(t, "a storm", false)
	events, stats := a.stop(t)

	ours := s.kernelKills(t)
	if ours != pods*perPod {
		t.Errorf("the kernel counted %d kills in the storm's containers, want %d (one per child)", ours, pods*perPod)
	}
	if s.took > time.Minute {
		// The kills' pace is the machine's: the agent's counts are
		// checked all the same.
		t.Logf("the storm took %v, more than a minute: the machine is busy", s.took.Round(time.Millisecond))
	}
	kills := ofKind(events, event.KindOOMKill)
	// Other kills on this machine meanwhile count in both numbers.
	if uint64(len(kills)) != after-before {
		t.Errorf("agent wrote %d oom_kill lines; /proc/vmstat oom_kill rose by %d", len(kills), after-before)
	}
	stormKills := s.inStorm(kills)
	if uint64(len(stormKills)) != ours {
		t.Errorf("agent wrote %d oom_kill lines for the storm's containers; the kernel counted %d kills in them", len(stormKills), ours)
	}
	victims := map[uint32]bool{}
	for _, e := range stormKills {
		if victims[e.Victim.PID] {
			t.Errorf("victim %d reported twice", e.Victim.PID)
		}
		victims[e.Victim.PID] = true
	}
	if stats.QueueDrops != 0 || stats.OutputDrops != 0 || stats.KernelDrops.RingBufFull != 0 {
		t.Errorf("agent lost events in a storm of %d kills: %+v", ours, stats)
	}
	t.Logf("%d kills in %d pods in %v (vmstat +%d): %d oom_kill lines, %d memcg_oom lines, lost %+v",
		ours, pods, s.took.Round(time.Millisecond), after-before, len(kills), len(ofKind(events, event.KindMemcgOOM)), stats)
}

// pauseNowAndThen stops the agent (SIGSTOP) for every other period until
// the returned function is called, which leaves it running.
func (a *agentRun) pauseNowAndThen(t *testing.T, period time.Duration) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for paused := false; ; paused = !paused {
			select {
			case <-done:
				a.cmd.Process.Signal(syscall.SIGCONT)
				return
			case <-tick.C:
			}
			sig := syscall.SIGSTOP
			if paused {
				sig = syscall.SIGCONT
			}
			if err := a.cmd.Process.Signal(sig); err != nil {
				t.Errorf("signal agent %v: %v", sig, err)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// With a ring buffer of one page, records are lost in a storm, and every
// loss is counted, by the event it would have been: the oom_kill lines
// plus the oom_kill records lost are exactly the kills the kernel
// counted, in the stop summary and in /metrics alike.
func TestTinyRingBufferCountsEveryLostKill(t *testing.T) {
	h := requireTracing(t)
	const pods, perPod = 10, 10
	tr := newTree(t, h)
	s := newPodStorm(t, tr, pods)

	addr := freeLocalAddr(t)
	a := startAgent(t, "--ringbuf-size=4096", "--metrics-addr="+addr, "--stats-interval=1s")
	before := vmstatOOMKills(t)
	// At this storm's pace the reader keeps up even with one page:
	// stopping the agent now and then, as a starved CPU would, fills it.
	stopPausing := a.pauseNowAndThen(t, 300*time.Millisecond)
	s.run(t, perPod)
	stopPausing()
	after := vmstatOOMKills(t)
	_, scraped := scrapeMetrics(t, addr)
	events, stats := a.stop(t)

	kills := uint64(len(ofKind(events, event.KindOOMKill)))
	lostKills := stats.KernelDrops.RingBufFullByEvent[event.KindOOMKill]
	var lostByEvent uint64
	for _, n := range stats.KernelDrops.RingBufFullByEvent {
		lostByEvent += n
	}
	t.Logf("%d kills (vmstat), %d in the storm's containers: %d oom_kill lines, %d oom_kill records lost; lost in all %d %v",
		after-before, s.kernelKills(t), kills, lostKills, stats.KernelDrops.RingBufFull, stats.KernelDrops.RingBufFullByEvent)
	if stats.KernelDrops.RingBufFull == 0 {
		t.Fatalf("a one-page ring buffer lost nothing in a storm of %d kills: the test proves nothing", after-before)
	}
	if lostByEvent != stats.KernelDrops.RingBufFull {
		t.Errorf("ring buffer losses by event sum to %d, the total is %d", lostByEvent, stats.KernelDrops.RingBufFull)
	}
	if stats.QueueDrops != 0 || stats.OutputDrops != 0 {
		t.Errorf("user space dropped events too (the test counts the kernel's losses only): %+v", stats)
	}
	if kills+lostKills != after-before {
		t.Errorf("%d oom_kill lines + %d oom_kill records lost = %d; /proc/vmstat oom_kill rose by %d", kills, lostKills, kills+lostKills, after-before)
	}
	// The scrape came after the storm, before the ring buffer was drained
	// at exit: what it counted lost stays lost.
	k := metricstest.Key("oomtrace_kernel_ringbuf_lost_total", map[string]string{"event": event.KindOOMKill})
	if got, ok := scraped[k]; !ok || uint64(got) != lostKills {
		t.Errorf("%s = %v (present %v), want %d as the stop summary says", k, got, ok, lostKills)
	}
	total := metricstest.Key("oomtrace_events_lost_total", map[string]string{"stage": "kernel_ringbuf"})
	if got := scraped[total]; uint64(got) != stats.KernelDrops.RingBufFull {
		t.Errorf("%s = %v, want %d as the stop summary says", total, got, stats.KernelDrops.RingBufFull)
	}
	if !strings.Contains(a.stderr.String(), `"msg":"events lost"`) || !strings.Contains(a.stderr.String(), `"ringbuf_full_by_event":{`) {
		t.Errorf("no \"events lost\" log line with the losses by event during the storm; stderr:\n%s", a.stderr.String())
	}
}
