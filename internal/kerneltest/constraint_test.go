// SPDX-License-Identifier: Apache-2.0

package kerneltest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/internal/event"
)

// loggedKill is what the kernel's own summary line says of one OOM kill.
type loggedKill struct {
	kernelName string // CONSTRAINT_NONE, CONSTRAINT_CPUSET, ...
	constraint string // the same as oomtrace names it
}

// kernelConstraintNames maps the kernel's oom_constraint_text to
// oomtrace's constraint names.
var kernelConstraintNames = map[string]string{
	"CONSTRAINT_NONE":          event.ConstraintGlobal,
	"CONSTRAINT_CPUSET":        event.ConstraintCpuset,
	"CONSTRAINT_MEMORY_POLICY": event.ConstraintMempolicy,
	"CONSTRAINT_MEMCG":         event.ConstraintMemcg,
}

// oomKillLine matches dump_oom_summary's line,
// "oom-kill:constraint=C,nodemask=...,task=COMM,pid=N,uid=U".
var oomKillLine = regexp.MustCompile(`oom-kill:constraint=(\w+),.*,pid=(\d+),uid=\d+`)

// kernelConstraints reads the kernel log's oom-kill lines into the
// constraint of each kill, by victim pid.
func kernelConstraints(log string) (map[uint32]loggedKill, error) {
	out := map[uint32]loggedKill{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "oom-kill:") {
			continue
		}
		m := oomKillLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("kernel log: cannot read oom-kill line %q", line)
		}
		c, ok := kernelConstraintNames[m[1]]
		if !ok {
			return nil, fmt.Errorf("kernel log: unknown constraint %s in %q", m[1], line)
		}
		pid, _ := strconv.ParseUint(m[2], 10, 32)
		out[uint32(pid)] = loggedKill{kernelName: m[1], constraint: c}
	}
	return out, nil
}

// checkLoggedConstraints holds every kill to the constraint the kernel
// logged for its OOM (members of a group kill have no line of their own:
// they share the chosen victim's oom_id). Without a hook on
// oom_kill_process only memcg and global can be told apart. Only memcg
// OOMs carry a memcg object.
func checkLoggedConstraints(t *testing.T, kills []*event.Event, logged map[uint32]loggedKill, contextHooks bool) {
	t.Helper()
	byOOM := map[uint64]loggedKill{}
	for _, e := range kills {
		if k, ok := logged[e.Victim.PID]; ok {
			byOOM[e.OOMID] = k
		}
	}
	for _, e := range kills {
		k, ok := byOOM[e.OOMID]
		if !ok {
			t.Errorf("victim %d (%s in %s, oom_id %d): no oom-kill line in the kernel log for it or its OOM", e.Victim.PID, e.Victim.Comm, e.Victim.Cgroup, e.OOMID)
			continue
		}
		want := k.constraint
		if !contextHooks && want != event.ConstraintMemcg {
			want = event.ConstraintGlobal
		}
		if e.Constraint != want {
			b, _ := json.Marshal(e)
			t.Errorf("victim %d in %s: constraint %q, the kernel logged %s: want %q; event:\n%s", e.Victim.PID, e.Victim.Cgroup, e.Constraint, k.kernelName, want, b)
		}
		if hasMemcg := e.Memcg != nil; hasMemcg != (e.Constraint == event.ConstraintMemcg) {
			t.Errorf("victim %d in %s: constraint %q with memcg %+v: only memcg OOMs carry a memcg object", e.Victim.PID, e.Victim.Cgroup, e.Constraint, e.Memcg)
		}
	}
}

// checkAgentSurvived: a global OOM must not choose the agent, which
// lowers its own oom_score_adj at start (it was started at 0).
func checkAgentSurvived(t *testing.T, r *run) {
	t.Helper()
	pid, err := strconv.ParseUint(r.results["agent_pid"], 10, 32)
	if err != nil {
		t.Fatalf("agent pid %q: %v", r.results["agent_pid"], err)
	}
	logged, err := kernelConstraints(r.res.Section("oomlog"))
	if err != nil {
		t.Fatal(err)
	}
	if _, killed := logged[uint32(pid)]; killed {
		t.Errorf("the kernel OOM-killed the agent (pid %d)", pid)
	}
	if adj, err := strconv.Atoi(r.results["agent_adj"]); err != nil || adj >= 0 {
		t.Errorf("agent oom_score_adj %q once ready, want negative: it must lower its own", r.results["agent_adj"])
	}
}

// Lines as Debian's 6.1 kernel printed them in the matrix.
func TestKernelConstraints(t *testing.T) {
	log := `[   24.683671] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0-1,oom_memcg=/s1,task_memcg=/s1,task=memhog,pid=187,uid=0
[   29.493016] oom-kill:constraint=CONSTRAINT_MEMORY_POLICY,nodemask=1,cpuset=/,mems_allowed=0-1,global_oom,task_memcg=/s6,task=memhog,pid=239,uid=0
[   30.104938] oom-kill:constraint=CONSTRAINT_CPUSET,nodemask=(null),cpuset=s7,mems_allowed=1,global_oom,task_memcg=/s7,task=memhog,pid=248,uid=0
[   31.189547] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=s8t,mems_allowed=0-1,global_oom,task_memcg=/s8,task=memhog,pid=256,uid=0
`
	got, err := kernelConstraints(log)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{187: event.ConstraintMemcg, 239: event.ConstraintMempolicy, 248: event.ConstraintCpuset, 256: event.ConstraintGlobal}
	if len(got) != len(want) {
		t.Errorf("got %d kills, want %d: %+v", len(got), len(want), got)
	}
	for pid, c := range want {
		if got[pid].constraint != c {
			t.Errorf("pid %d: %+v, want %s", pid, got[pid], c)
		}
	}
	if _, err := kernelConstraints("oom-kill:constraint=CONSTRAINT_NEW,nodemask=(null),task=x,pid=1,uid=0"); err == nil {
		t.Error("an unknown constraint was accepted")
	}
}
