// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// kmsg reads the kernel log (/dev/kmsg) from the moment it was opened,
// as it is written: the log is a ring, and an OOM report is long enough
// that a storm's would overwrite each other before a late reader came.
type kmsg struct {
	fd          int
	stop, done  chan struct{}
	msgs        []string
	overwritten int
	err         error
}

func followKmsg(t *testing.T) *kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("skipped: the kernel log (/dev/kmsg): %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		t.Fatalf("seek /dev/kmsg to its end: %v", err)
	}
	k := &kmsg{fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	go k.follow()
	t.Cleanup(func() { k.messages() })
	return k
}

func (k *kmsg) follow() {
	defer close(k.done)
	defer unix.Close(k.fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			select {
			case <-k.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		case errors.Is(err, unix.EPIPE):
			k.overwritten++
			continue
		case err != nil:
			k.err = err
			return
		}
		// "prio,seq,time,flags;message\n", then " KEY=value" lines.
		if _, msg, ok := strings.Cut(string(buf[:n]), ";"); ok {
			msg, _, _ = strings.Cut(msg, "\n")
			k.msgs = append(k.msgs, msg)
		}
	}
}

// messages stops following and returns what was logged meanwhile, and how
// many times records were overwritten before they could be read.
func (k *kmsg) messages() ([]string, int, error) {
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	<-k.done
	return k.msgs, k.overwritten, k.err
}

var (
	// oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a/b,task_memcg=/a/b,task=memhog,pid=1,uid=0
	kmsgConstraint = regexp.MustCompile(`^oom-kill:constraint=[^,]*,.*oom_memcg=([^,]*),`)
	// Memory cgroup out of memory: Killed process 123 (memhog) total-vm:...
	kmsgKilled = regexp.MustCompile(`Killed process (\d+) \(`)
)

// What a log parser could have known: during a storm of 200 OOM kills in
// 20 pods, the kernel log's lines about them against oomtrace's events.
// The kernel rate-limits its OOM report, and with it the one line that
// names the memory cgroup (oom-kill:constraint=..., oom_memcg=...): a
// kmsg-based tool knows the cgroup of only the kills it saw that line
// for. The "Killed process" line comes for every kill, without a cgroup.
func TestBenchLogParserComparison(t *testing.T) {
	benchreport.Require(t)
	h := requireTracing(t)
	const pods, perPod = 20, 10
	tr := newTree(t, h)
	s := newPodStorm(t, tr, pods)
	a := startAgent(t)
	log := followKmsg(t)
	s.run(t, perPod)
	time.Sleep(time.Second) // the last reports' lines
	msgs, overwritten, err := log.messages()
	if err != nil {
		t.Fatalf("read /dev/kmsg: %v", err)
	}
	events, _ := a.stop(t)
	kernel := s.kernelKills(t)

	ours := map[string]bool{}
	for _, dir := range s.containers {
		rel, _ := filepath.Rel(s.h.Mount, dir)
		ours["/"+rel] = true
	}
	victims := map[int]bool{}
	withMemcg := 0
	for _, e := range s.inStorm(ofKind(events, event.KindOOMKill)) {
		victims[int(e.Victim.PID)] = true
		if e.Memcg != nil && e.Memcg.Path != "" {
			withMemcg++
		}
	}
	constraintLines, killedLines := 0, 0
	for _, m := range msgs {
		if c := kmsgConstraint.FindStringSubmatch(m); c != nil && ours[c[1]] {
			constraintLines++
		}
		if k := kmsgKilled.FindStringSubmatch(m); k != nil {
			if pid, _ := strconv.Atoi(k[1]); victims[pid] {
				killedLines++
			}
		}
	}
	t.Logf("%d kills in %v: %d kernel log messages read (%d overwritten before read)", kernel, s.took.Round(time.Millisecond), len(msgs), overwritten)
	if overwritten > 0 {
		t.Errorf("the kernel log overwrote records before they were read (%d times): the log's counts are short for that reason", overwritten)
	}

	pct := func(n int) string { return fmt.Sprintf("%d (%.0f %%)", n, 100*float64(n)/float64(kernel)) }
	var b strings.Builder
	fmt.Fprintf(&b, "%d OOM kills in %d pods (%d MiB containers) in %.1f s, %.0f kills/s:\n\n", kernel, pods, stormLimitMiB, s.took.Seconds(), float64(kernel)/s.took.Seconds())
	b.WriteString("| source | kills it shows | with the memory cgroup |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| the kernel's count (`oom_kill` in the containers' `memory.oom_control`) | %d | |\n", kernel)
	fmt.Fprintf(&b, "| kernel log: `Killed process` lines (every kill, no cgroup) | %s | 0 |\n", pct(killedLines))
	fmt.Fprintf(&b, "| kernel log: `oom-kill:constraint=…` lines (`oom_memcg=`; rate-limited with the OOM report) | %s | %s |\n", pct(constraintLines), pct(constraintLines))
	fmt.Fprintf(&b, "| oomtrace: `oom_kill` events | %s | %s |\n", pct(len(victims)), pct(withMemcg))
	benchreport.Write(t, "40-log-parser", b.String())
}

// stormFigures is one storm's outcome as the agent and the kernel count
// it.
type stormFigures struct {
	ring                string
	kernel, vmstat      uint64 // kills in the storm's containers; all on the machine meanwhile
	lines               uint64 // oom_kill lines
	lostKills, lostAll  uint64 // ring buffer: oom_kill records, every record
	userLost            uint64 // decode and output queues
	took                time.Duration
	exactWithCountedAll bool
}

func measureStorm(t *testing.T, pods, perPod int, ring string, args ...string) stormFigures {
	t.Helper()
	h := requireTracing(t)
	tr := newTree(t, h)
	s := newPodStorm(t, tr, pods)
	a := startAgent(t, args...)
	before := vmstatOOMKills(t)
	s.run(t, perPod)
	after := vmstatOOMKills(t)
	events, stats := a.stop(t)
	f := stormFigures{
		ring: ring, kernel: s.kernelKills(t), vmstat: after - before,
		lines:     uint64(len(ofKind(events, event.KindOOMKill))),
		lostKills: stats.KernelDrops.RingBufFullByEvent[event.KindOOMKill], lostAll: stats.KernelDrops.RingBufFull,
		userLost: stats.QueueDrops + stats.OutputDrops, took: s.took,
	}
	f.exactWithCountedAll = f.userLost == 0 && f.lines+f.lostKills == f.vmstat
	tr.remove()
	return f
}

// The storm figures: 500 OOM kills in 20 pods with the default ring
// buffer, and again with one of a single page, where records are lost;
// either way the lines plus the counted losses are the kernel's count.
func TestBenchStorm(t *testing.T) {
	benchreport.Require(t)
	const pods, perPod = 20, 25
	runs := []stormFigures{
		measureStorm(t, pods, perPod, fmt.Sprintf("%d KiB (default)", probe.DefaultRingBufSize>>10)),
		measureStorm(t, pods, perPod, "4 KiB (`--ringbuf-size=4096`)", "--ringbuf-size=4096"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d pods, %d OOM kills each (%d MiB containers):\n\n", pods, perPod, stormLimitMiB)
	b.WriteString("| ring buffer | kills (kernel: storm / machine) | took | kills/s | `oom_kill` lines | `oom_kill` records lost (counted) | records lost in all | lost in user space | lines + counted = kernel |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range runs {
		exact := "yes"
		if !f.exactWithCountedAll {
			exact = "**no**"
			t.Errorf("%s: %d lines + %d counted lost != %d kills (user space lost %d)", f.ring, f.lines, f.lostKills, f.vmstat, f.userLost)
		}
		fmt.Fprintf(&b, "| %s | %d / %d | %.1f s | %.0f | %d | %d | %d | %d | %s |\n",
			f.ring, f.kernel, f.vmstat, f.took.Seconds(), float64(f.kernel)/f.took.Seconds(), f.lines, f.lostKills, f.lostAll, f.userLost, exact)
	}
	benchreport.Write(t, "41-storm", b.String())
}
