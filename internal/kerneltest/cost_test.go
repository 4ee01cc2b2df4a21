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

// vmOverheadRounds is smaller than on the host: each round's emulated
// workloads and agent starts take about ten seconds under qemu.
const vmOverheadRounds = 12

// TestBenchKprobeKernel boots one kernel that has kprobes (6.12, or
// $BENCH_KERNEL) and shows, from the kernel's own list of BPF links
// while the agent runs, where the agent's programs sit: none on the page
// allocation fast path, the allocation failure hook on warn_alloc. Then
// it measures the agent's overhead on internal/allocload's workloads
// there, as TestBenchWorkloadOverhead does on this machine.
//
//	BENCH_RUN='^TestBenchKprobeKernel$' make bench
func TestBenchKprobeKernel(t *testing.T) {
	benchreport.Require(t)
	if _, err := exec.LookPath(vmtest.QEMU); err != nil {
		t.Skipf("skipped: %s not installed (apt-get install qemu-system-x86)", vmtest.QEMU)
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
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
		Timeout:         15 * time.Minute,
		Files:           files,
		Script:          costScript(vmOverheadRounds),
		ConsoleLogLevel: 1,
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

	m := overhead.New(overhead.Arms)
	for _, line := range strings.Split(strings.TrimSpace(res.Section("results")), "\n") {
		round, rest, _ := strings.Cut(line, " ")
		arm, rest, _ := strings.Cut(rest, " ")
		r, err1 := strconv.Atoi(round)
		a, err2 := strconv.Atoi(arm)
		if err1 != nil || err2 != nil || a < 0 || a >= len(overhead.Arms) {
			t.Fatalf("result line %q: want \"<round> <arm> <allocload's line>\"", line)
		}
		if err := m.Add(r, overhead.Arms[a], rest); err != nil {
			t.Fatal(err)
		}
	}
	table, missed := m.Table(overhead.Target{Agent: 0.01, AllocOff: 0.01})
	table += fmt.Sprintf("\n%d rounds in a qemu VM (TCG, 2 vCPUs, 1 GiB) running Debian's %s.\n", vmOverheadRounds, k.Release)
	benchreport.Write(t, "13-workload-overhead-kprobe-kernel", table)
	for _, s := range missed {
		t.Error(s)
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
// workloads, each line of results "<round> <arm index> <allocload's line>".
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
	for round := 0; round < rounds; round++ {
		for _, arm := range overhead.Order(round) {
			a := indexOf(overhead.Arms, arm)
			if args := overhead.AgentArgs[arm]; args != nil {
				fmt.Fprintf(&b, "start_agent %s\n", strings.Join(args, " "))
			}
			for i := 0; i < overhead.Repeats*len(overhead.VMWorkloads); i++ {
				w := overhead.VMWorkloads[i%len(overhead.VMWorkloads)]
				fmt.Fprintf(&b, "allocload %s | sed 's/^/%d %d /' >> /tmp/results || exit 12\n", strings.Join(w.Args("/tmp"), " "), round, a)
			}
			if overhead.AgentArgs[arm] != nil {
				b.WriteString("stop_agent\n")
			}
		}
	}
	b.WriteString("section results < /tmp/results\n")
	return b.String()
}
