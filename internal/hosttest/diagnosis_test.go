// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
)

// checkDiagnosis asserts the exact set of codes: the wanted ones fire, and
// no other code of the rule set (diagnose.Codes).
func checkDiagnosis(t *testing.T, e *event.Event, want ...string) {
	t.Helper()
	got := map[string]string{}
	for _, f := range e.Diagnosis {
		got[f.Code] = f.Summary
	}
	all := diagnose.Codes()
	for _, w := range want {
		if !slices.Contains(all, w) {
			t.Errorf("wanted code %s is not one diagnose.Codes() lists", w)
		}
	}
	for c, summary := range got {
		if !slices.Contains(all, c) {
			t.Errorf("diagnosis has %s, a code diagnose.Codes() does not list: %s", c, summary)
		}
	}
	for _, c := range all {
		_, fired := got[c]
		wanted := slices.Contains(want, c)
		switch {
		case wanted && !fired:
			t.Errorf("diagnosis lacks %s; got %v", c, e.Diagnosis)
		case fired && !wanted:
			t.Errorf("diagnosis has %s, wrong here: %s", c, got[c])
		}
	}
}

// onlyKill runs until exactly one oom_kill line was written, and returns it.
func onlyKill(t *testing.T, events []*event.Event) *event.Event {
	t.Helper()
	kills := ofKind(events, event.KindOOMKill)
	if len(kills) != 1 {
		t.Fatalf("got %d oom_kill lines, want 1: %+v", len(kills), kills)
	}
	return kills[0]
}

// Seed 004, in the running container: a tmpfs (an emptyDir with medium:
// Memory) filled by the container itself, then its process grows into the
// container's limit.
func TestDiagnoseShmemInRunningContainer(t *testing.T) {
	h := requireTracing(t)
	uid, cid := newPodUID(t), newContainerID(t)
	podPath := "/kubepods/burstable/pod" + uid
	ctrPath := podPath + "/" + cid
	tr := newTree(t, h)
	tr.mkdir(podPath, 512<<20)
	ctr := tr.mkdir(ctrPath, 96<<20)
	emptyDir := t.TempDir()

	a := startAgent(t)
	p := startHogWith(t, hogOpts{dir: ctr, mib: 80, mode: "exit", privateTmpfs: emptyDir, write: filepath.Join(emptyDir, "data"), writeMiB: 50, sleeper: true})
	if err := p.wait(t); !killedBySIGKILL(err) {
		t.Fatalf("exit %v, want killed", err)
	}
	events, _ := a.stop(t)
	e := onlyKill(t, events)

	if e.Memcg.Path != ctrPath || e.Memcg.Stat == nil {
		t.Fatalf("memcg %+v: want the container's, with its memory.stat", e.Memcg)
	}
	if st := e.Memcg.Stat; st.ShmemBytes < 45<<20 || st.AnonBytes == 0 {
		t.Errorf("memory.stat %+v: want about the 50 MiB written to tmpfs as shmem", st)
	}
	if e.Memcg.StatDelayUS == nil {
		t.Error("no stat_delay_us")
	}
	checkDiagnosis(t, e, diagnose.ContainerLimit, diagnose.ShmemDominant)
	if s := eventtest.Summary(e, diagnose.ShmemDominant); !strings.Contains(s, emptyDir) || strings.Contains(s, "earlier container") {
		t.Errorf("shmem summary should name the tmpfs %s and no earlier container: %s", emptyDir, s)
	}
	if t.Failed() {
		b, _ := json.Marshal(e)
		t.Logf("event: %s", b)
	}
}

// Seed 004's twist: an earlier container of the pod filled the pod's
// emptyDir and was removed; its tmpfs pages stay charged to the pod, and
// the next container OOMs at the pod's limit with little of its own.
func TestDiagnoseShmemLeftByEarlierContainer(t *testing.T) {
	h := requireTracing(t)
	uid := newPodUID(t)
	podPath := "/kubepods/burstable/pod" + uid
	oldCtr, newCtr := podPath+"/"+newContainerID(t), podPath+"/"+newContainerID(t)
	tr := newTree(t, h)
	tr.mkdir(podPath, 96<<20)
	first := tr.mkdir(oldCtr, 0)
	second := tr.mkdir(newCtr, 0)

	// The pod's emptyDir lives on the node, outside any container.
	emptyDir := t.TempDir()
	if err := unix.Mount("tmpfs", emptyDir, "tmpfs", 0, "size=128m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(emptyDir, unix.MNT_DETACH) })

	w := startHogWith(t, hogOpts{dir: first, mib: 0, mode: "exit", write: filepath.Join(emptyDir, "data"), writeMiB: 45})
	if err := w.wait(t); err != nil {
		t.Fatalf("first container's writer: %v", err)
	}
	tr.removeOne(first) // the container is gone; its tmpfs pages are not

	a := startAgent(t)
	p := startHog(t, second, 80, "exit")
	if err := p.wait(t); !killedBySIGKILL(err) {
		t.Fatalf("exit %v, want killed", err)
	}
	events, _ := a.stop(t)
	e := onlyKill(t, events)

	if e.Memcg.Path != podPath || e.Memcg.Stat == nil || e.Memcg.Stat.ShmemBytes < 45<<20 {
		t.Fatalf("memcg %+v stat %+v: want the pod with the 45 MiB of shmem", e.Memcg, e.Memcg.Stat)
	}
	if e.Victim.CgroupStat == nil || e.Victim.CgroupStat.ShmemBytes > 1<<20 {
		t.Errorf("victim cgroup_stat %+v: want the new container's own numbers, with no shmem", e.Victim.CgroupStat)
	}
	checkDiagnosis(t, e, diagnose.PodLimit, diagnose.ShmemDominant)
	if s := eventtest.Summary(e, diagnose.ShmemDominant); !strings.Contains(s, "earlier container") {
		t.Errorf("shmem summary should say an earlier container left it: %s", s)
	}
}

// A child process, not the container's pid 1, is killed: Kubernetes would
// report nothing.
func TestDiagnoseNonInitVictim(t *testing.T) {
	h := requireTracing(t)
	uid, cid := newPodUID(t), newContainerID(t)
	tr := newTree(t, h)
	ctr := tr.mkdir("/kubepods/besteffort/pod"+uid+"/"+cid, 64<<20)

	a := startAgent(t)
	p := startHogWith(t, hogOpts{dir: ctr, mib: 100, mode: "init"})
	if err := p.wait(t); err == nil {
		t.Fatal("the container's init exited 0: its child was not killed")
	}
	events, _ := a.stop(t)
	e := onlyKill(t, events)
	if e.Victim.NSPID < 2 || e.Victim.PID == p.pid() {
		t.Fatalf("victim pid %d (ns pid %d): want the init's child", e.Victim.PID, e.Victim.NSPID)
	}
	checkDiagnosis(t, e, diagnose.ContainerLimit, diagnose.NonInitVictim)
}

// oom_score_adj makes the kernel kill a smaller task than the largest.
func TestDiagnoseVictimNotLargest(t *testing.T) {
	h := requireTracing(t)
	uid, cid := newPodUID(t), newContainerID(t)
	tr := newTree(t, h)
	ctr := tr.mkdir("/kubepods/burstable/pod"+uid+"/"+cid, 112<<20)

	a := startAgent(t)
	big := startHogWith(t, hogOpts{dir: ctr, mib: 80, mode: "hold"})
	small := startHogWith(t, hogOpts{dir: ctr, mib: 40, mode: "exit", adj: "900"})
	if err := small.wait(t); !killedBySIGKILL(err) {
		t.Fatalf("small process: exit %v, want killed", err)
	}
	events, _ := a.stop(t)
	e := onlyKill(t, events)
	if e.Victim.PID != small.pid() {
		t.Fatalf("victim %d, want the smaller process %d at oom_score_adj 900", e.Victim.PID, small.pid())
	}
	checkDiagnosis(t, e, diagnose.ContainerLimit, diagnose.VictimNotLargest, diagnose.QOSOOMScoreAdj)
	if s := eventtest.Summary(e, diagnose.VictimNotLargest); !strings.Contains(s, "pid "+itoa(big.pid())) {
		t.Errorf("summary should name the larger task %d: %s", big.pid(), s)
	}
}
