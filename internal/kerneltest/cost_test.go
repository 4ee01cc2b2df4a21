// SPDX-License-Identifier: Apache-2.0

package kerneltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/benchreport"
	"github.com/oomtrace/oomtrace/internal/overhead"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

// allocFastPath are hooks that run on every page allocation (or free):
// on a kernel with kprobes none of the agent's programs may sit there.
var allocFastPath = map[string]bool{
	"mm_page_alloc": true, "mm_page_alloc_zone_locked": true, "mm_page_free": true, "mm_page_free_batched": true,
	"__alloc_pages": true, "__alloc_pages_noprof": true, "get_page_from_freelist": true, "rmqueue": true,
	"__alloc_pages_nodemask": true, "alloc_pages": true, "alloc_pages_noprof": true, "__folio_alloc": true,
}

// vmOverheadRounds: with the guest's clock counting instructions, rounds
// differ by tenths of a percent; each takes about two minutes under
// qemu (most of it the agent's two starts). Three rounds put each arm
// first once.
const vmOverheadRounds = 3

// vmOverheadSet is one overhead table measured in the VM: the agent as
// it runs by default on this kernel, or forced to the tracepoint tier
// (what it does on a kernel without kprobes).
type vmOverheadSet struct {
	name      string
	table     string
	agentArgs []string
	target    overhead.Target
	what      string
}

var vmOverheadSets = []vmOverheadSet{
	{"kprobe", "13-workload-overhead-kprobe-kernel", nil, overhead.Target{Agent: 0.01, AllocOff: 0.01},
		"the agent on its default tiers (page allocation failures: kprobe on warn_alloc)"},
	{"tracepoint", "14-workload-overhead-tracepoint-tier", []string{"--tier=tracepoint"}, overhead.Target{Agent: 0.03, AllocOff: 0.01},
		"the agent forced to the tracepoint tier (`--tier=tracepoint`: page allocation failures on tp_btf mm_page_alloc), as on a kernel without kprobes"},
}

// TestBenchKprobeKernel boots one kernel that has kprobes (6.12, or
// $BENCH_KERNEL) and shows, from the kernel's own list of BPF links
// while the agent runs, where the agent's programs sit: none on the page
// allocation fast path, the allocation failure hook on warn_alloc. Then
// it measures the agent's overhead on internal/allocload's workloads
// there, as TestBenchWorkloadOverhead does on this machine, for the
// agent on its default tiers and forced to the tracepoint tier: with
// the guest's clock counting instructions, free of this shared
// machine's noise.
//
//	BENCH_RUN='^TestBenchKprobeKernel$' make bench
func TestBenchKprobeKernel(t *testing.T) {
	benchreport.Require(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("skipped: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	series := os.Getenv("BENCH_KERNEL")
	if series == "" {
		series = "6.12"
	}
	k, err := vmtest.FindKernel(series)
	if errors.Is(err, vmtest.ErrNoKernel) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	var files []vmtest.File
	for _, pkg := range []string{"oomtrace", "allocload", "bpflinks"} {
		src := "./internal/" + pkg
		if pkg == "oomtrace" {
			src = "./cmd/oomtrace"
		}
		bin := filepath.Join(dir, pkg)
		if err := vmtest.BuildStatic(ctx, "../..", src, bin); err != nil {
			t.Fatal(err)
		}
		files = append(files, vmtest.File{Guest: "/bin/" + pkg, Host: bin, Mode: 0o755})
	}
	res, err := vmtest.Boot(ctx, vmtest.BootOptions{
		Kernel:          k,
		MemoryMiB:       1024,
		Timeout:         30 * time.Minute,
		Files:           files,
		Script:          costScript(vmOverheadRounds),
		ConsoleLogLevel: 1,
		// The guest's clock counts instructions (1 ns each): a workload's
		// CPU time is what it executed, whatever else the host runs.
		QEMUArgs: []string{"-icount", "shift=0"},
	})
	if err != nil {
		t.Fatalf("%v\nconsole (end):\n%s", err, lastLines(res.Console, 40))
	}
	if res.ExitStatus != 0 {
		t.Fatalf("scenario exited %d; agent log:\n%s\nconsole (end):\n%s", res.ExitStatus, res.Section("agentlog"), lastLines(res.Console, 40))
	}
	var check probe.Report
	if err := json.Unmarshal([]byte(res.Section("check")), &check); err != nil {
		t.Fatalf("oomtrace check --json: %v\n%s", err, res.Section("check"))
	}
	if !check.Tiers[probe.TierKprobe.String()].OK {
		t.Skipf("skipped: kernel %s has no kprobes: %s", k.Release, check.Tiers[probe.TierKprobe.String()].Detail)
	}

	hooks := hookTable(t, res.Section("links"), k.Release)
	benchreport.Write(t, "12-kprobe-kernel-hooks", hooks)

	results := map[string]*overhead.Measurements{}
	for _, line := range strings.Split(strings.TrimSpace(res.Section("results")), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			t.Fatalf("result line %q: want \"<set> <round> <arm> <allocload's line>\"", line)
		}
		r, err1 := strconv.Atoi(f[1])
		a, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || a < 0 || a >= len(overhead.Arms) {
			t.Fatalf("result line %q: want \"<set> <round> <arm> <allocload's line>\"", line)
		}
		if results[f[0]] == nil {
			results[f[0]] = overhead.New(overhead.Arms)
		}
		if err := results[f[0]].Add(r, overhead.Arms[a], f[3]); err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range vmOverheadSets {
		m := results[set.name]
		if m == nil {
			t.Fatalf("no results of %s", set.name)
		}
		table, missed := m.Table(set.target)
		table += fmt.Sprintf("\n%d rounds of %s, in a qemu VM (TCG, 2 vCPUs, 1 GiB, `-icount shift=0`: the guest's clock counts instructions, so CPU time is what the workload executed, free of the host's load; caches are not modelled) running Debian's %s.\n",
			vmOverheadRounds, set.what, k.Release)
		benchreport.Write(t, set.table, table)
		for _, s := range missed {
			t.Errorf("%s: %s", set.name, s)
		}
	}
}

// hookTable turns bpflinks' lines into the table of the agent's hooks,
// and fails the test for any on the allocation fast path.
func hookTable(t *testing.T, links, release string) string {
	type hook struct{ Program, Kind, Target string }
	var hooks []hook
	for _, line := range strings.Split(strings.TrimSpace(links), "\n") {
		var h hook
		if err := json.Unmarshal([]byte(line), &h); err != nil {
			t.Fatalf("bpflinks line %q: %v", line, err)
		}
		hooks = append(hooks, h)
	}
	sort.Slice(hooks, func(i, j int) bool { return hooks[i].Program < hooks[j].Program })
	var b strings.Builder
	b.WriteString("| program | hook | runs on every page allocation |\n|---|---|---|\n")
	warnAlloc := false
	for _, h := range hooks {
		hot := "no"
		if allocFastPath[h.Target] {
			hot = "**yes**"
			t.Errorf("the agent's %s sits on %s %s: the allocation fast path, on a kernel with kprobes", h.Program, h.Kind, h.Target)
		}
		warnAlloc = warnAlloc || h.Kind == "kprobe" && h.Target == "warn_alloc"
		fmt.Fprintf(&b, "| `%s` | %s `%s` | %s |\n", h.Program, h.Kind, h.Target, hot)
	}
	if !warnAlloc {
		t.Errorf("no kprobe on warn_alloc among the agent's hooks: page allocation failures are not traced on their failure path")
	}
	fmt.Fprintf(&b, "\nEvery BPF link in the kernel while `oomtrace agent` ran (defaults: each hook on its best tier), in a qemu VM running Debian's %s.\n", release)
	return b.String()
}

// costScript lists the agent's hooks, then runs rounds of the overhead
// workloads for each set, each line of results "<set> <round> <arm
// index> <allocload's line>".
func costScript(rounds int) string {
	var b strings.Builder
	b.WriteString(`
start_agent() {
	rm -f /tmp/ready
	oomtrace agent --metrics-addr= --socket= --node-name vm --ready-file /tmp/ready "$@" > /dev/null 2> /tmp/agent.log &
	AGENT=$!
	i=0; while [ ! -f /tmp/ready ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
	[ -f /tmp/ready ] || { section agentlog < /tmp/agent.log; exit 10; }
}
stop_agent() { kill -TERM $AGENT; wait $AGENT; }
oomtrace check --json > /tmp/check.json
section check < /tmp/check.json
start_agent
bpflinks > /tmp/links || exit 11
section links < /tmp/links
stop_agent
: > /tmp/results
`)
	for _, set := range vmOverheadSets {
		for round := 0; round < rounds; round++ {
			for _, arm := range overhead.Order(round) {
				a := indexOf(overhead.Arms, arm)
				if args := overhead.AgentArgs[arm]; args != nil {
					fmt.Fprintf(&b, "start_agent %s\n", strings.Join(append(append([]string{}, set.agentArgs...), args...), " "))
				}
				for i := 0; i < overhead.Repeats*len(overhead.VMWorkloads); i++ {
					w := overhead.VMWorkloads[i%len(overhead.VMWorkloads)]
					fmt.Fprintf(&b, "allocload %s | sed 's/^/%s %d %d /' >> /tmp/results || exit 12\n", strings.Join(w.Args("/tmp"), " "), set.name, round, a)
				}
				if overhead.AgentArgs[arm] != nil {
					b.WriteString("stop_agent\n")
				}
			}
		}
	}
	b.WriteString("section results < /tmp/results\n")
	return b.String()
}
