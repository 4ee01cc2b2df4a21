// SPDX-License-Identifier: Apache-2.0

package diagnose

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
)

const (
	pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod96bc17dc_f218_4e61_be05_c945fa8670f9.slice"
	ctr = pod + "/docker-24ec5b44a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c.scope"
	gib = uint64(1) << 30
	mib = uint64(1) << 20
)

var node = Node{MemTotalBytes: 64 * gib, PageSize: 4096}

func kill(memcgPath string, usage, limit uint64, st *event.MemoryStat) *event.Event {
	return &event.Event{
		Event:      event.KindOOMKill,
		Victim:     &event.Victim{PID: 212425, NSPID: 1, Comm: "java", OOMScoreAdj: 873, Cgroup: ctr, RSS: event.RSS{AnonBytes: 8 * gib}},
		Trigger:    &event.Trigger{PID: 212425, Comm: "GC Thread#2", Cgroup: ctr},
		Constraint: event.ConstraintMemcg,
		Memcg:      &event.Memcg{Path: memcgPath, UsageBytes: usage, LimitBytes: limit, Stat: st},
		K8s:        &event.K8s{PodUID: cgroup.Identify(ctr).PodUID, ContainerID: cgroup.Identify(ctr).ContainerID, QOS: cgroup.Identify(ctr).QOS},
	}
}

func codes(f []event.Finding) []string {
	var out []string
	for _, x := range f {
		out = append(out, x.Code)
	}
	sort.Strings(out)
	return out
}

func find(f []event.Finding, code string) *event.Finding {
	for i := range f {
		if f[i].Code == code {
			return &f[i]
		}
	}
	return nil
}

// Seed 004: a 16 GiB pod limit, the JVM at 8 GiB, the rest shmem left in
// the pod cgroup by an earlier container's emptyDir.
func TestSeed004ShmemAtPodLimit(t *testing.T) {
	e := kill(pod, 16*gib, 16*gib, &event.MemoryStat{AnonBytes: 7550 * mib, ShmemBytes: 8633 * mib, FileBytes: 2 * mib, KernelBytes: 60 * mib})
	e.Victim.CgroupStat = &event.MemoryStat{AnonBytes: 7550 * mib, FileBytes: 1 * mib}
	e.TmpfsMounts = []string{"/memtest"}
	got := Diagnose(e, node)
	want := []string{PodLimit, QOSOOMScoreAdj, ShmemDominant}
	if strings.Join(codes(got), ",") != strings.Join(want, ",") {
		t.Fatalf("codes %v, want %v", codes(got), want)
	}
	s := find(got, ShmemDominant).Summary
	for _, w := range []string{"8.4 GiB", "16 GiB", "53%", "/memtest", "holds only 0 B", "earlier container"} {
		if !strings.Contains(s, w) {
			t.Errorf("shmem summary lacks %q: %s", w, s)
		}
	}
	// adj 873 on a 64 GiB node: request ≈ (1000-873)/1000 × 64 GiB.
	if s := find(got, QOSOOMScoreAdj).Summary; !strings.Contains(s, "8.1 GiB") {
		t.Errorf("qos summary lacks the inferred request 8.1 GiB: %s", s)
	}
}

// Seed 004 inside the running container: the container's own limit, its
// own tmpfs.
func TestShmemInContainer(t *testing.T) {
	e := kill(ctr, 1*gib, 1*gib, &event.MemoryStat{AnonBytes: 100 * mib, ShmemBytes: 900 * mib})
	got := Diagnose(e, node)
	if c := codes(got); strings.Join(c, ",") != "container_limit,qos_oom_score_adj,shmem_dominant" {
		t.Fatalf("codes %v", c)
	}
	if s := find(got, ShmemDominant).Summary; strings.Contains(s, "earlier container") {
		t.Errorf("no earlier container here: %s", s)
	}
}

// Seed 000/002: anonymous memory at the pod limit: nothing dominant but
// the process itself.
func TestAnonAtPodLimit(t *testing.T) {
	e := kill(pod, 123*mib, 123*mib, &event.MemoryStat{AnonBytes: 120 * mib, FileBytes: 1 * mib, KernelBytes: 2 * mib})
	got := codes(Diagnose(e, node))
	if strings.Join(got, ",") != "pod_limit,qos_oom_score_adj" {
		t.Errorf("codes %v, want pod_limit and qos_oom_score_adj only", got)
	}
}

func TestPageCacheAndKernel(t *testing.T) {
	e := kill(ctr, gib, gib, &event.MemoryStat{AnonBytes: 100 * mib, FileBytes: 600 * mib, FileDirtyBytes: 300 * mib, KernelBytes: 300 * mib})
	got := Diagnose(e, node)
	if find(got, PageCacheDominant) == nil || find(got, KernelMemoryDominant) == nil || find(got, ShmemDominant) != nil {
		t.Errorf("codes %v, want page_cache_dominant and kernel_memory_dominant, not shmem_dominant", codes(got))
	}
	if s := find(got, PageCacheDominant).Summary; !strings.Contains(s, "300 MiB of it dirty") {
		t.Errorf("page cache summary: %s", s)
	}
}

func TestNonInitVictim(t *testing.T) {
	e := kill(ctr, gib, gib, nil)
	e.Victim.NSPID = 7
	if find(Diagnose(e, node), NonInitVictim) == nil {
		t.Error("a victim at pid 7 of its container: want non_init_victim")
	}
	e.Victim.NSPID = e.Victim.PID
	if find(Diagnose(e, node), NonInitVictim) != nil {
		t.Error("no pid namespace of its own (hostPID): cannot tell, no non_init_victim")
	}
	e.Victim.NSPID = 1
	if find(Diagnose(e, node), NonInitVictim) != nil {
		t.Error("the container's pid 1 was killed: no non_init_victim")
	}
	e.Victim.NSPID, e.K8s = 7, nil
	if find(Diagnose(e, node), NonInitVictim) != nil {
		t.Error("not a container: no non_init_victim")
	}
}

func TestVictimNotLargest(t *testing.T) {
	e := kill(ctr, gib, gib, nil)
	e.Victim.RSS = event.RSS{AnonBytes: 100 * mib}
	e.Victim.OOMScoreAdj = 900
	e.Tasks = []event.Task{
		{PID: 212425, Comm: "java", RSSBytes: 100 * mib, OOMScoreAdj: 900, Points: 250000},
		{PID: 300, Comm: "big", RSSBytes: 700 * mib, OOMScoreAdj: 0, Points: 179200},
	}
	f := find(Diagnose(e, node), VictimNotLargest)
	if f == nil || !strings.Contains(f.Summary, "big (pid 300, 700 MiB resident, oom_score_adj 0, 179200 points)") {
		t.Fatalf("want victim_not_largest naming the larger task: %+v", f)
	}
	// The larger task had the same adj: it would have been chosen; no finding.
	e.Tasks[1].OOMScoreAdj = 900
	if find(Diagnose(e, node), VictimNotLargest) != nil {
		t.Error("victim_not_largest without an oom_score_adj difference")
	}
}

func TestQOSDecoding(t *testing.T) {
	for adj, want := range map[int32]string{-998: "Guaranteed", 1000: "BestEffort", 939: "Burstable"} {
		e := kill(ctr, gib, gib, nil)
		e.Victim.OOMScoreAdj = adj
		f := find(Diagnose(e, Node{MemTotalBytes: 2041888 << 10, PageSize: 4096}), QOSOOMScoreAdj)
		if f == nil || !strings.Contains(f.Summary, want) {
			t.Errorf("adj %d: %+v, want %s", adj, f, want)
		}
	}
	// Seed 000: adj 939 on a 2041888 KiB node: a request of about 122 MiB (the pod's 123Mi).
	e := kill(ctr, gib, gib, nil)
	e.Victim.OOMScoreAdj = 939
	if f := find(Diagnose(e, Node{MemTotalBytes: 2041888 << 10, PageSize: 4096}), QOSOOMScoreAdj); !strings.Contains(f.Summary, "122 MiB") {
		t.Errorf("seed 000's request: %s", f.Summary)
	}
	e.Victim.OOMScoreAdj = 0
	if f := find(Diagnose(e, node), QOSOOMScoreAdj); f != nil {
		t.Errorf("adj 0 is not a kubelet value: %+v", f)
	}
}

func TestGlobalAndGroup(t *testing.T) {
	e := kill(ctr, gib, gib, nil)
	e.Constraint, e.Memcg, e.GroupKill = event.ConstraintGlobal, nil, true
	n := node
	n.TopCgroups = []cgroup.Usage{{Path: "/system.slice", UsageBytes: 2 * gib}, {Path: pod, UsageBytes: 40 * gib}}
	got := Diagnose(e, n)
	if find(got, GroupKill) == nil || find(got, GlobalOOM) == nil || find(got, PodLimit) != nil {
		t.Fatalf("codes %v", codes(got))
	}
	if s := find(got, GlobalOOM).Summary; !strings.HasPrefix(s[strings.Index(s, "largest cgroups: ")+17:], pod+" 40 GiB") {
		t.Errorf("largest cgroup first: %s", s)
	}
}

// Seed 003: an order-6 failure while hundreds of MiB were free in
// fragments of order 3 and below.
func TestFragmentation(t *testing.T) {
	free, above := uint64(438832)<<10, uint64(0)
	e := &event.Event{
		Event:   event.KindAllocFailure,
		Trigger: &event.Trigger{Comm: "runc:[2:INIT]", Cgroup: "/"},
		Alloc:   &event.Alloc{Order: 6, FreeBytes: &free, FreeBytesAtOrAboveOrder: &above},
	}
	f := find(Diagnose(e, node), Fragmentation)
	if f == nil || !strings.Contains(f.Summary, "429 MiB is free") || !strings.Contains(f.Summary, "order 6 (256 KiB") {
		t.Fatalf("fragmentation: %+v", f)
	}
	above = 10 << 20
	if find(Diagnose(e, node), Fragmentation) != nil {
		t.Error("blocks of the order were free: no fragmentation")
	}
	free, above = 200<<10, 0
	if find(Diagnose(e, node), Fragmentation) != nil {
		t.Error("almost nothing free: that is not fragmentation")
	}
}

func TestKmemCharge(t *testing.T) {
	e := &event.Event{Event: event.KindAllocFailure, Trigger: &event.Trigger{Comm: "x", Cgroup: ctr}, Alloc: &event.Alloc{Order: 2, MemcgCharge: true}}
	if find(Diagnose(e, node), MemcgKmemCharge) == nil {
		t.Error("want memcg_kmem_charge")
	}
	e.Alloc.MemcgCharge = false
	if len(Diagnose(e, node)) != 0 {
		t.Errorf("no findings expected: %v", codes(Diagnose(e, node)))
	}
}

// Codes() must be exactly the codes the rules add: a rule with a new code
// that is not listed would escape every exact-diagnosis check. Read from
// the package's own source, each `add(Code, ...)` call.
func TestCodesAreTheRules(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{} // constant name → its string value
	used := map[string]bool{}     // constant names passed to add
	for _, f := range pkgs["diagnose"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							values[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && fn.Name == "add" && len(n.Args) > 0 {
					id, ok := n.Args[0].(*ast.Ident)
					if !ok {
						t.Errorf("%s: add called with %T, want a code constant", fset.Position(n.Pos()), n.Args[0])
						return true
					}
					used[id.Name] = true
				}
			}
			return true
		})
	}
	var fromRules []string
	for name := range used {
		v, ok := values[name]
		if !ok {
			t.Errorf("add(%s, ...): not a string constant of this package", name)
		}
		fromRules = append(fromRules, v)
	}
	listed := Codes()
	sort.Strings(fromRules)
	sort.Strings(listed)
	if strings.Join(fromRules, ",") != strings.Join(listed, ",") {
		t.Errorf("Codes() = %v; the rules add %v", listed, fromRules)
	}
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range listed {
		if !strings.Contains(string(doc), "| `"+c+"` |") {
			t.Errorf("docs/events.md has no table row for %s", c)
		}
	}
}
