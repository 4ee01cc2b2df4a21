// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/kube"
)

func TestVictimSet(t *testing.T) {
	v := newVictimSet(2)
	for i, tc := range []struct {
		oom  uint64
		pid  uint32
		want bool
	}{
		{1, 10, true},
		{1, 10, false}, // the same process again in the same OOM
		{2, 10, true},  // a later OOM
		{1, 11, true},  // evicts (1, 10)
		{1, 10, true},
	} {
		if got := v.add(tc.oom, tc.pid); got != tc.want {
			t.Errorf("step %d: add(%d, %d) = %v, want %v", i, tc.oom, tc.pid, got, tc.want)
		}
	}
}

// A cgroup removed before the agent reads it: the event keeps what the
// kernel captured and says why memory.stat is missing.
func TestEnrichCgroupGone(t *testing.T) {
	hier := &cgroup.Hierarchy{Version: 2, Mount: t.TempDir()}
	e := &event.Event{
		Event:      event.KindOOMKill,
		Time:       time.Now(),
		Victim:     &event.Victim{PID: 10, Cgroup: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Trigger:    &event.Trigger{PID: 10},
		Constraint: event.ConstraintMemcg,
		Memcg:      &event.Memcg{Path: "/kubepods/pod8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", LimitBytes: 1 << 30, UsageBytes: 1 << 30},
	}
	newEnricher(hier, gfpBits{}, nil).enrich(e)
	if e.Memcg.Stat != nil || !strings.Contains(e.Memcg.StatError, "removed") || e.Memcg.StatDelayUS == nil {
		t.Errorf("memcg %+v: want no stat, a stat_error saying the cgroup was removed, and the delay", e.Memcg)
	}
	if e.K8s == nil || e.K8s.PodUID != "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6" {
		t.Errorf("k8s %+v: identity comes from the captured path, not the cgroup", e.K8s)
	}
	if len(e.Diagnosis) == 0 || e.Diagnosis[0].Code != "pod_limit" {
		t.Errorf("diagnosis %+v: the limit level is still known", e.Diagnosis)
	}
}

// A cut path names only the last levels of the cgroup: nothing is read
// from it, and it is not taken for a cgroup that was removed.
func TestEnrichCutPathReadsNothing(t *testing.T) {
	mount := t.TempDir()
	en := &enricher{hier: &cgroup.Hierarchy{Version: 2, Mount: mount}, pageSize: 4096}
	cut := "/l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/l12/l13/l14/l15/l16"
	e := &event.Event{
		Event: event.KindOOMKill, Time: time.Now(), Constraint: event.ConstraintMemcg,
		Victim:  &event.Victim{PID: 1 << 22, Cgroup: cut, CgroupTruncated: true},
		Trigger: &event.Trigger{PID: 1 << 22, Cgroup: cut, CgroupTruncated: true},
		Memcg:   &event.Memcg{Path: "/l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/l12/l13/l14/l15", PathTruncated: true, LimitBytes: 32 << 20, UsageBytes: 32 << 20},
	}
	en.enrich(e)
	if m := e.Memcg; m.Stat != nil || m.StatDelayUS != nil || strings.Contains(m.StatError, "removed") || !strings.Contains(m.StatError, "cut") {
		t.Errorf("memcg stat %+v delay %v error %q: want nothing read and the error saying the path was cut", m.Stat, m.StatDelayUS, m.StatError)
	}
	if e.Victim.CgroupStat != nil || e.Tasks != nil {
		t.Errorf("read from a cut path: cgroup_stat %+v tasks %+v", e.Victim.CgroupStat, e.Tasks)
	}
}

// fakeNamer answers from a table, and records what it was asked.
type fakeNamer struct {
	names map[string]kube.Names // by container ID
	err   error
	asked []string
}

func (f *fakeNamer) Names(_ time.Time, podUID, containerID string) (kube.Names, error) {
	f.asked = append(f.asked, podUID+"/"+containerID)
	return f.names[containerID], f.err
}

// The event carries the names the resolver gives for the pod and
// container of the victim's cgroup, and what it could not name, and the
// line still validates against the schema.
func TestEnrichNames(t *testing.T) {
	const uid, id = "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	victim := func() *event.Event {
		return &event.Event{
			Event: event.KindOOMKill, Time: time.Now(), Node: "node-1", Constraint: event.ConstraintMemcg,
			Victim:  &event.Victim{PID: 10, Comm: "memhog", Cgroup: "/kubepods/burstable/pod" + uid + "/" + id},
			Trigger: &event.Trigger{PID: 10, Comm: "memhog", Cgroup: "/kubepods/burstable/pod" + uid + "/" + id},
			Memcg:   &event.Memcg{Path: "/kubepods/burstable/pod" + uid + "/" + id, LimitBytes: 1 << 30, UsageBytes: 1 << 30},
		}
	}
	names := &fakeNamer{names: map[string]kube.Names{id: {Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &kube.Workload{Kind: "Deployment", Name: "web"}}}}
	e := victim()
	newEnricher(nil, gfpBits{}, names).enrich(e)
	want := event.K8s{Namespace: "shop", Pod: "web-7c9d8f6b5-x2x4q", Container: "app", Workload: &event.Workload{Kind: "Deployment", Name: "web"},
		PodUID: uid, ContainerID: id, QOS: "Burstable"}
	if e.K8s == nil || !reflect.DeepEqual(*e.K8s, want) {
		t.Errorf("k8s %+v, want %+v", e.K8s, want)
	}
	if len(names.asked) != 1 || names.asked[0] != uid+"/"+id {
		t.Errorf("asked %q, want the victim's pod and container once", names.asked)
	}
	checkLine(t, e)

	failing := &fakeNamer{err: errors.New("pod and container names: cri: dial unix /run/containerd/containerd.sock: connect: connection refused")}
	e = victim()
	newEnricher(nil, gfpBits{}, failing).enrich(e)
	if k := e.K8s; k.Pod != "" || k.Workload != nil || k.LookupError != failing.err.Error() || k.PodUID != uid {
		t.Errorf("k8s %+v: want the IDs, no names, and lookup_error %q", k, failing.err)
	}
	checkLine(t, e)

	// No k8s identity in the path: nothing to name, nothing asked.
	e = victim()
	e.Victim.Cgroup, e.Trigger.Cgroup, e.Memcg.Path = "/system.slice/cron.service", "/system.slice/cron.service", "/system.slice/cron.service"
	asked := len(failing.asked)
	newEnricher(nil, gfpBits{}, failing).enrich(e)
	if e.K8s != nil || len(failing.asked) != asked {
		t.Errorf("k8s %+v, asked %q: a cgroup no pod's is not looked up", e.K8s, failing.asked)
	}
}

func checkLine(t *testing.T, e *event.Event) {
	t.Helper()
	buf, err := event.EncodeLine(e)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	eventtest.Validate(t, eventtest.Schema(t), bytes.TrimSpace(buf.Bytes()))
}
