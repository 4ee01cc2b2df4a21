// SPDX-License-Identifier: Apache-2.0

// Package kerneltest runs oomtrace on other kernels, in qemu VMs, against
// real OOMs and page allocation failures: every scenario, on every kernel
// of every architecture, once per attach tier, so each tier is proven where
// it exists.
//
//	make vmtest                               all kernels, amd64 and arm64
//	make vmtest KERNELS=6.1                   one series, both architectures
//	make vmtest KERNELS=6.1 ARCHES=arm64      one kernel
package kerneltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

var tiers = []string{"fentry", "kprobe", "tracepoint"}

// guest holds the static programs the VMs get.
type guest struct {
	bins    map[string]guestBins // by architecture
	modules map[string]string    // Kernel.Name() → allocfail.ko, where it built
	// noModule says why a kernel has no module where this host cannot
	// build one (its toolchain is older than the kernel's kbuild tools).
	noModule map[string]string
}

// guestBins are the programs of one architecture (GOARCH).
type guestBins struct{ oomtrace, memhog string }

// files is what every VM of kernel k gets.
func (g guest) files(k vmtest.Kernel) []vmtest.File {
	b := g.bins[arch(k)]
	files := []vmtest.File{
		{Guest: "/bin/oomtrace", Host: b.oomtrace, Mode: 0o755},
		{Guest: "/bin/memhog", Host: b.memhog, Mode: 0o755},
	}
	if ko := g.modules[k.Name()]; ko != "" {
		files = append(files, vmtest.File{Guest: "/allocfail.ko", Host: ko, Mode: 0o644})
	}
	return files
}

// moduleSkip is why kernel k's module scenarios skip.
func (g guest) moduleSkip(k vmtest.Kernel) string {
	if why := g.noModule[k.Name()]; why != "" {
		return "skipped: no test module for this kernel: " + why
	}
	return "skipped: the test module did not build for this kernel"
}

func arch(k vmtest.Kernel) string {
	if k.Arch == "" {
		return vmtest.AMD64.Name
	}
	return k.Arch
}

func buildGuest(dir string, kernels []vmtest.Kernel) (guest, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // a first build for another GOARCH compiles every dependency
	defer cancel()
	g := guest{bins: map[string]guestBins{}, modules: map[string]string{}, noModule: map[string]string{}}
	for _, k := range kernels {
		a := arch(k)
		if _, done := g.bins[a]; done {
			continue
		}
		b := guestBins{oomtrace: filepath.Join(dir, a, "oomtrace"), memhog: filepath.Join(dir, a, "memhog")}
		if err := vmtest.BuildStaticFor(ctx, a, "../..", "./cmd/oomtrace", b.oomtrace); err != nil {
			return g, err
		}
		if err := vmtest.BuildStaticFor(ctx, a, "../..", "./internal/memhog", b.memhog); err != nil {
			return g, err
		}
		g.bins[a] = b
	}
	for _, k := range kernels {
		ko, err := buildModule(ctx, k, filepath.Join(dir, "mod-"+k.Name()))
		var old hostTooOld
		if errors.As(err, &old) {
			// Not a failure of the test: this host cannot build for that
			// kernel; its other scenarios run.
			g.noModule[k.Name()] = old.Error()
			continue
		}
		if err != nil {
			// In CI a missing module fails the run (matrixSetup reports it);
			// elsewhere only its scenarios skip.
			setupErrs = append(setupErrs, fmt.Sprintf("kernel %s: no test module, its allocation failure scenarios skip: %v", k.Name(), err))
			continue
		}
		g.modules[k.Name()] = ko
	}
	return g, nil
}

// hostTooOld: the kernel's prebuilt kbuild tools (modpost, objtool) need a
// newer C library than this host's: seen with trixie's 7.x kernels on a
// bookworm host.
type hostTooOld struct{ detail string }

func (e hostTooOld) Error() string {
	return "its kbuild tools need a newer C library than this host's: " + e.detail
}

var glibcTooOld = regexp.MustCompile(`([^ :]+): [^:]*libc\.so\.6: version .(GLIBC_[0-9.]+). not found`)

// crossCompilers are the compilers for modules of kernels of another
// architecture than the host's: ARCH= and the compiler (Debian's
// gcc-12-aarch64-linux-gnu).
var crossCompilers = map[string][]string{
	"arm64": {"ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=aarch64-linux-gnu-gcc-12"},
}

// buildModule builds testdata/allocfail against the kernel's headers.
func buildModule(ctx context.Context, k vmtest.Kernel, dir string) (string, error) {
	headers := k.HeadersDir()
	if _, err := os.Stat(headers); err != nil {
		return "", fmt.Errorf("no headers at %s: run scripts/vm/fetch-kernels.sh --headers --arch %s %s", headers, arch(k), k.Series)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"allocfail.c", "Kbuild"} {
		b, err := os.ReadFile(filepath.Join("testdata/allocfail", f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	// gcc-12 builds modules for all three (5.10 was built with gcc-10, which
	// this distribution lacks; the module loads all the same). Module BTF
	// would need pahole: not needed for a test module. Kernels built with
	// gcc 14 ask for -fmin-function-alignment, which gcc-12 lacks; without
	// CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT kbuild asks for -falign-functions.
	args := []string{"-C", headers, "M=" + dir, "CONFIG_DEBUG_INFO_BTF_MODULES=", "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT="}
	if a := arch(k); a != runtime.GOARCH {
		cross, ok := crossCompilers[a]
		if !ok {
			return "", fmt.Errorf("no cross compiler known for %s modules", a)
		}
		if _, err := exec.LookPath(strings.TrimPrefix(cross[len(cross)-1], "CC=")); err != nil {
			return "", fmt.Errorf("%w (make deps installs it)", err)
		}
		args = append(args, cross...)
	} else {
		args = append(args, "CC=gcc-12")
	}
	cmd := exec.CommandContext(ctx, "make", append(args, "modules")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		if m := glibcTooOld.FindSubmatch(out); m != nil {
			return "", hostTooOld{fmt.Sprintf("%s needs %s", filepath.Base(string(m[1])), m[2])}
		}
		return "", fmt.Errorf("build module: %w\n%s", err, out)
	}
	return filepath.Join(dir, "allocfail.ko"), nil
}

// run is one boot: one kernel, one forced tier, every scenario.
type run struct {
	kernel vmtest.Kernel
	tier   string
	res    vmtest.Result
	check  probe.Report
	// auto is `oomtrace check` without --tier, where the tier is refused.
	auto   probe.Report
	events []*event.Event
	// results: "name value" lines the scenario script wrote.
	results map[string]string
}

var (
	setupOnce    sync.Once
	setupKernels []vmtest.Kernel
	setupGuest   guest
	setupSkip    string
	setupErrs    []string
	buildDir     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// matrixSetup finds the kernels ($KERNELS, default all) and builds what
// the guests run, once for every test of the package.
func matrixSetup(t *testing.T) ([]vmtest.Kernel, guest) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped: -short: the kernel matrix boots VMs (make vmtest)")
	}
	setupOnce.Do(func() {
		if os.Geteuid() != 0 {
			setupSkip = "skipped: building the guest's test module and reading the kernel cache need root"
			return
		}
		// Kernels in the order they boot: the series, oldest first, each
		// on every architecture, so the slower arm64 boots are spread over
		// the run instead of queued at its end.
		want := func(env, v string) bool {
			s := os.Getenv(env)
			return s == "" || strings.Contains(" "+strings.ReplaceAll(s, ",", " ")+" ", " "+v+" ")
		}
		missing := map[string]bool{}
		for _, series := range vmtest.Series {
			for _, a := range vmtest.Arches {
				if !want("KERNELS", series) || !want("ARCHES", a.Name) || !slices.Contains(vmtest.SeriesOf(a.Name), series) {
					continue
				}
				if _, err := exec.LookPath(a.QEMU); err != nil {
					missing[fmt.Sprintf("%s not installed (apt-get install %s)", a.QEMU, a.Package)] = true
					continue
				}
				k, err := vmtest.FindArchKernel(a.Name, series)
				if err != nil {
					setupErrs = append(setupErrs, fmt.Sprintf("kernel %s: %v", series, err))
					continue
				}
				setupKernels = append(setupKernels, k)
			}
		}
		for m := range missing {
			setupErrs = append(setupErrs, m)
		}
		if len(setupKernels) == 0 {
			setupSkip = "skipped: no kernels cached for KERNELS/ARCHES: run make kernels"
			return
		}
		var err error
		if buildDir, err = os.MkdirTemp("", "oomtrace-kerneltest-"); err != nil {
			setupErrs = append(setupErrs, err.Error())
			return
		}
		setupGuest, err = buildGuest(buildDir, setupKernels)
		if err != nil {
			setupErrs = append(setupErrs, err.Error())
			setupKernels = nil
		}
	})
	for _, e := range setupErrs {
		if os.Getenv("CI") != "" {
			t.Error(e)
		} else {
			t.Log(e)
		}
	}
	if setupSkip != "" {
		t.Skip(setupSkip)
	}
	if len(setupKernels) == 0 {
		t.FailNow()
	}
	return setupKernels, setupGuest
}

func TestMatrix(t *testing.T) {
	kernels, g := matrixSetup(t)
	runTiers := tiers
	if s := os.Getenv("TIERS"); s != "" {
		runTiers = strings.Fields(strings.ReplaceAll(s, ",", " "))
	}

	var (
		mu   sync.Mutex
		runs []*run
	)
	for _, k := range kernels {
		for _, tier := range runTiers {
			t.Run(arch(k)+"/"+k.Series+"/"+tier, func(t *testing.T) {
				t.Parallel()
				r := boot(t, g, k, tier)
				mu.Lock()
				runs = append(runs, r)
				mu.Unlock()
				if r.check.CanTrace {
					checkScenarios(t, r, g)
				}
			})
		}
	}
	t.Cleanup(func() {
		if path := os.Getenv("OOMTRACE_KERNEL_TABLE"); path != "" && !t.Failed() {
			if err := os.WriteFile(path, []byte(kernelTable(runs)), 0o644); err != nil {
				t.Errorf("write kernel table: %v", err)
			}
		}
	})
}

// script is the scenario run in every VM, on two NUMA nodes. Every process
// that is not a scenario's own runs at oom_score_adj -1000, so a global OOM
// can only choose the hog, except the agent: it starts at 0, as it would on
// a node, and must lower its own oom_score_adj.
const script = `
echo -1000 > /proc/self/oom_score_adj
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
result() { echo "$1 $2" >> /tmp/results; }

awk '/^KernelPageSize:/ {print "page_size_kib", $2; exit}' /proc/self/smaps >> /tmp/results
oomtrace check --tier $TIER --json > /tmp/check.json; result check_exit $?
section check < /tmp/check.json
if [ "$(grep -c '"can_trace_oom_kills": true' /tmp/check.json)" != 1 ]; then
	oomtrace agent --tier $TIER --metrics-addr= > /dev/null 2> /tmp/agent.log; result agent_exit $?
	section agentlog < /tmp/agent.log
	# What the agent does without --tier: the tier it uses instead, and why.
	oomtrace check --json > /tmp/check.json; result check_auto_exit $?
	section check_auto < /tmp/check.json
	section results < /tmp/results
	exit 0
fi

# 0: before the agent starts (a second program on mark_victim would add
# a frame to its stacks), two trace sessions load their own probes with a
# kernel-side filter: the one on /t1 shows the kill of a memcg OOM there,
# the one on /t0 (no OOM there) has it dropped in the kernel.
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/t1 /sys/fs/cgroup/t0 && echo 32M > /sys/fs/cgroup/t1/memory.max
trace_on() {
	c=$1; shift
	oomtrace trace --socket= --cri-endpoint=none --kube-api=off --events oom_kill --cgroup /$c "$@" > /tmp/trace_$c.jsonl 2> /tmp/trace_$c.log &
	echo $! > /tmp/trace_$c.pid; wait $!; result trace_${c}_exit $?
}
(trace_on t1 --count 1 --for 300s) &
(trace_on t0 --for 300s) & T0=$!
# Up to 2 minutes: two sessions reading kallsyms at once under arm64's
# emulation, on a loaded host, took more than 30 s.
i=0; while [ "$(cat /tmp/trace_t1.log /tmp/trace_t0.log 2>/dev/null | grep -c 'probes attached')" != 2 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
result trace_attach_ds $i
memhog hog -adj 0 -cgroup /sys/fs/cgroup/t1 -mib 64; result t1_exit $?
i=0; while ! grep -q trace_t1_exit /tmp/results && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
kill -TERM $(cat /tmp/trace_t0.pid); wait $T0
section trace_t1 < /tmp/trace_t1.jsonl
section trace_t1_log < /tmp/trace_t1.log
section trace_t0 < /tmp/trace_t0.jsonl
section trace_t0_log < /tmp/trace_t0.log

(echo 0 > /proc/self/oom_score_adj; exec oomtrace agent --tier $TIER --metrics-addr= --alloc-nowarn --node-name vm --ready-file /tmp/ready) > /tmp/events.jsonl 2> /tmp/agent.log &
AGENT=$!
i=0; while [ ! -f /tmp/ready ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -f /tmp/ready ] || { section agentlog < /tmp/agent.log; exit 10; }
result agent_ready_ds $i
result agent_pid $AGENT
result agent_adj $(cat /proc/$AGENT/oom_score_adj)
read k0 < /proc/vmstat; grep '^oom_kill ' /proc/vmstat | { read n v; result vmstat_before $v; }

echo +memory > /sys/fs/cgroup/cgroup.subtree_control
cg() { mkdir /sys/fs/cgroup/$1 && echo $2 > /sys/fs/cgroup/$1/memory.max; }

# 1: memcg OOM: 64 MiB in a 32 MiB cgroup.
cg s1 32M
memhog hog -adj 0 -cgroup /sys/fs/cgroup/s1 -mib 64; result s1_exit $?

# 2: group kill: three tasks in a 64 MiB cgroup with memory.oom.group.
grep '^oom_kill ' /proc/vmstat | { read n v; result vmstat_s2_before $v; }
cg s2 64M; echo 1 > /sys/fs/cgroup/s2/memory.oom.group
memhog hog -adj 0 -cgroup /sys/fs/cgroup/s2 -mib 20 -hold > /tmp/h1 & P1=$!
memhog hog -adj 0 -cgroup /sys/fs/cgroup/s2 -mib 20 -hold > /tmp/h2 & P2=$!
i=0; while [ "$(cat /tmp/h1 /tmp/h2 | grep -c ready)" != 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
memhog hog -adj 0 -cgroup /sys/fs/cgroup/s2 -mib 40; result s2_exit3 $?
wait $P1; result s2_exit1 $?
wait $P2; result s2_exit2 $?
grep '^oom_kill ' /proc/vmstat | { read n v; result vmstat_s2_after $v; }

# 3: memcg OOM with no victim: the only task is at oom_score_adj -1000 and
# fills a tmpfs file, so the failed charge is a write's ENOMEM, not a page
# fault the kernel would retry forever.
cg s3 32M
timeout 60 memhog fill -cgroup /sys/fs/cgroup/s3 -adj -1000 -mib 64 -file /dev/shm/s3 > /tmp/s3.out 2>&1; result s3_exit $?
rm -f /dev/shm/s3

# 4: global OOM: no cgroup limit, more than the VM has.
timeout 60 memhog hog -adj 0 -mib 2048; result s4_exit $?

# 5a: huge pages until the first order-9 failure (__GFP_NOWARN).
echo 100000 > /proc/sys/vm/nr_hugepages; result s5_hugepages $(cat /proc/sys/vm/nr_hugepages)
echo 0 > /proc/sys/vm/nr_hugepages

# 5b: warned order-10 failures from a test module's init.
if [ -f /allocfail.ko ]; then insmod /allocfail.ko 2>/dev/null; result s5b_insmod $?; fi

# 6: mempolicy OOM: a task bound to node 1 (set_mempolicy MPOL_BIND)
# overruns the node. Its cgroup has no limit.
mkdir /sys/fs/cgroup/s6
timeout 60 memhog hog -adj 0 -cgroup /sys/fs/cgroup/s6 -bind-node 1 -mib 512; result s6_exit $?

# 7: cpuset OOM: a task in a cgroup with cpuset.mems=1 overruns node 1.
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/s7 && echo 1 > /sys/fs/cgroup/s7/cpuset.mems
timeout 60 memhog hog -adj 0 -cgroup /sys/fs/cgroup/s7 -mib 512; result s7_exit $?

# 8: global OOM whose victim sits at its own cgroup's limit: it holds
# 48 MiB at oom_score_adj 1000 in /s8, whose limit is then set 1 MiB above
# its usage, and a task in /s8t, with no limit, fills the VM. The victim
# goes first; the trigger, next in line, after it.
mkdir /sys/fs/cgroup/s8 /sys/fs/cgroup/s8t
memhog hog -cgroup /sys/fs/cgroup/s8 -adj 1000 -mib 48 -hold > /tmp/h8 & P8=$!
i=0; while ! grep -q ready /tmp/h8 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo $(( $(cat /sys/fs/cgroup/s8/memory.current) + (1 << 20) )) > /sys/fs/cgroup/s8/memory.max
result s8_current $(cat /sys/fs/cgroup/s8/memory.current)
result s8_max $(cat /sys/fs/cgroup/s8/memory.max)
timeout 60 memhog hog -adj 0 -cgroup /sys/fs/cgroup/s8t -mib 2048; result s8_trigger_exit $?
wait $P8; result s8_victim_exit $?

grep '^oom_kill ' /proc/vmstat | { read n v; result vmstat_after $v; }
sleep 0.5
kill -TERM $AGENT; wait $AGENT; result agent_exit $?
section events < /tmp/events.jsonl
section agentlog < /tmp/agent.log
dmesg | grep -c 'page allocation failure' | { read n; result dmesg_alloc_failure_lines $n; }
dmesg | grep 'oom-kill:constraint=' | section oomlog
section results < /tmp/results
`

func boot(t *testing.T, g guest, k vmtest.Kernel, tier string) *run {
	timeout := vmTimeout(k, 6*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	res, err := bootOnce(t, ctx, vmtest.BootOptions{
		Console:         consoleLog(t, k.Name()+"-"+tier),
		Kernel:          k,
		MemoryMiB:       512,
		NUMANodes:       2,
		Timeout:         timeout,
		Files:           g.files(k),
		Script:          "TIER=" + tier + "\n" + script,
		ConsoleLogLevel: 1,
	})
	if err != nil {
		t.Fatalf("boot %s: %v\nconsole (end):\n%s", k.Release, err, lastLines(res.Console, 40))
	}
	r := &run{kernel: k, tier: tier, res: res, results: map[string]string{}}
	for _, line := range strings.Split(res.Section("results"), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			r.results[k] = v
		}
	}
	t.Logf("%s %s --tier=%s: booted to /init in %.1fs (guest clock), whole run %.1fs; trace sessions attached after %ss/10, agent ready after %ss/10",
		arch(k), k.Release, tier, res.InitAt.Seconds(), res.Duration.Seconds(), r.results["trace_attach_ds"], r.results["agent_ready_ds"])
	if err := json.Unmarshal([]byte(res.Section("check")), &r.check); err != nil {
		t.Fatalf("oomtrace check --json in the VM: %v\n%s\nconsole:\n%s", err, res.Section("check"), lastLines(res.Console, 40))
	}
	if res.ExitStatus != 0 {
		t.Fatalf("scenario script exited %d; agent log:\n%s\nconsole (end):\n%s", res.ExitStatus, res.Section("agentlog"), lastLines(res.Console, 40))
	}
	if !r.check.CanTrace {
		// A tier this kernel lacks: the agent must refuse, naming it.
		if r.results["agent_exit"] == "0" {
			t.Errorf("agent --tier=%s started although check said: %s", tier, r.check.Conclusion)
		}
		if log := res.Section("agentlog"); !strings.Contains(log, "--tier="+tier) {
			t.Errorf("agent --tier=%s failed without naming the tier:\n%s", tier, log)
		}
		t.Logf("%s: tier %s unavailable: %s", k.Release, tier, r.check.Conclusion)
		checkInstead(t, r)
		return r
	}
	schema := eventtest.Schema(t)
	for _, line := range strings.Split(strings.TrimSpace(res.Section("events")), "\n") {
		if line != "" {
			r.events = append(r.events, eventtest.Validate(t, schema, []byte(line)))
		}
	}
	return r
}

// checkInstead asserts, for a tier the kernel refused, that oomtrace
// without --tier traces all the same, with another tier, and says what the
// refused tier lacks on each hook that has a form of that tier.
func checkInstead(t *testing.T, r *run) {
	if err := json.Unmarshal([]byte(r.res.Section("check_auto")), &r.auto); err != nil {
		t.Fatalf("oomtrace check --json (no --tier): %v\n%s", err, r.res.Section("check_auto"))
	}
	if !r.auto.CanTrace || r.results["check_auto_exit"] != "0" {
		t.Fatalf("without --tier, check exits %s: %s", r.results["check_auto_exit"], r.auto.Conclusion)
	}
	if r.tier != "fentry" {
		return
	}
	for _, h := range r.auto.Hooks {
		if h.Hook != "oom_kill_process" && h.Hook != "mem_cgroup_out_of_memory" {
			continue
		}
		why := ""
		for _, s := range h.Skipped {
			if strings.HasPrefix(s, "fentry (") {
				why = s
			}
		}
		if h.Tier == "fentry" || why == "" {
			t.Errorf("without --tier, %s uses %s and passes over %q: want another tier and why fentry is not used", h.Hook, h.Tier, h.Skipped)
		}
	}
}

// checkScenarios asserts what each scenario must have produced.
func checkScenarios(t *testing.T, r *run, g guest) {
	hookTier := map[string]string{}
	for _, h := range r.check.Hooks {
		hookTier[h.Hook] = h.Tier
	}
	contextHooks := hookTier["oom_kill_process"] != "none"
	memcgHook := hookTier["mem_cgroup_out_of_memory"] != "none"
	if r.tier != "tracepoint" && (!contextHooks || !memcgHook) {
		t.Errorf("tier %s: oom_kill_process on %s, mem_cgroup_out_of_memory on %s", r.tier, hookTier["oom_kill_process"], hookTier["mem_cgroup_out_of_memory"])
	}
	if r.results["agent_exit"] != "0" {
		t.Errorf("agent exit %s on SIGTERM; log:\n%s", r.results["agent_exit"], r.res.Section("agentlog"))
	}
	by := func(kind, cgroup string) []*event.Event {
		var out []*event.Event
		for _, e := range r.events {
			if e.Event != kind {
				continue
			}
			switch {
			case cgroup == "":
			case e.Memcg != nil && e.Memcg.Path == cgroup:
			case e.Victim != nil && e.Victim.Cgroup == cgroup:
			default:
				continue
			}
			out = append(out, e)
		}
		return out
	}

	t.Run("trace session filtered in the kernel", func(t *testing.T) {
		schema := eventtest.Schema(t)
		for _, cg := range []string{"t1", "t0"} {
			log := r.res.Section("trace_" + cg + "_log")
			if r.results["trace_"+cg+"_exit"] != "0" {
				t.Errorf("trace --cgroup /%s exit %q; stderr:\n%s", cg, r.results["trace_"+cg+"_exit"], log)
				continue
			}
			var kills int
			for _, line := range strings.Split(strings.TrimSpace(r.res.Section("trace_"+cg)), "\n") {
				if line == "" {
					continue
				}
				e := eventtest.Validate(t, schema, []byte(line))
				if e.Event != event.KindOOMKill || e.Victim == nil || e.Victim.Cgroup != "/t1" {
					t.Errorf("trace --cgroup /%s showed %s %+v, want only the kill in /t1", cg, e.Event, e.Victim)
				}
				kills++
			}
			m := regexp.MustCompile(`(\d+) filtered in the kernel \(cgroup /` + cg + `\)`).FindStringSubmatch(log)
			if m == nil {
				t.Errorf("trace --cgroup /%s: the summary does not say the kernel filtered on /%s:\n%s", cg, cg, log)
				continue
			}
			filtered, _ := strconv.Atoi(m[1])
			if cg == "t1" && kills != 1 {
				t.Errorf("trace --cgroup /t1 showed %d kills, want 1; stderr:\n%s", kills, log)
			}
			if cg == "t0" && (kills != 0 || filtered < 1) {
				t.Errorf("trace --cgroup /t0 showed %d kills, %d filtered in the kernel, want 0 and the /t1 kill; stderr:\n%s", kills, filtered, log)
			}
		}
	})

	t.Run("memcg OOM", func(t *testing.T) {
		kills := by(event.KindOOMKill, "/s1")
		if r.results["s1_exit"] != "137" || len(kills) != 1 {
			t.Fatalf("hog exit %s, %d oom_kill lines for /s1, want 137 and 1", r.results["s1_exit"], len(kills))
		}
		e := kills[0]
		if e.Constraint != event.ConstraintMemcg || e.Memcg == nil || e.Memcg.Path != "/s1" || e.Memcg.LimitBytes != 32<<20 {
			t.Errorf("constraint %q memcg %+v, want memcg /s1 at 32 MiB", e.Constraint, e.Memcg)
		}
		if e.Victim.Comm != "memhog" || e.Victim.PID != e.Trigger.PID {
			t.Errorf("victim %+v trigger %+v: want the hog, which triggered its own OOM", e.Victim, e.Trigger)
		}
		if contextHooks {
			if e.OOM == nil || e.OOM.DomainBytes != 32<<20 || e.OOM.GFP == "" {
				t.Errorf("oom context %+v: want the 32 MiB domain and the gfp of the charge", e.OOM)
			}
		} else if e.OOM != nil {
			t.Errorf("oom context %+v without a hook on oom_kill_process", e.OOM)
		}
		// 5.10's unwinder stops at a kretprobe's trampoline: on the kprobe
		// tier its stacks end at the probed function.
		if !eventtest.HasFrame(e.Stack, "out_of_memory") && !(r.tier == "kprobe" && r.kernel.Series == "5.10" && eventtest.HasFrame(e.Stack, "oom_kill_process")) {
			t.Errorf("stack lacks out_of_memory: %v", e.Stack)
		}
		if len(e.Stack) > 0 && !strings.Contains(e.Stack[0], "oom") {
			t.Errorf("stack starts at %s, not in the OOM code: the probe's own frames were left in", e.Stack[0])
		}
		wantCodes(t, e)
		if memcgHook {
			// Its memcg_oom record; others may follow while the victim dies
			// (victim_found, since one is already dying, and 0 victims).
			var m *event.Event
			for _, x := range by(event.KindMemcgOOM, "/s1") {
				if x.OOMID == e.OOMID {
					m = x
				}
			}
			if m == nil || !*m.VictimFound || *m.Victims != 1 {
				t.Errorf("memcg_oom with oom_id %d for /s1: %+v; want victim_found and 1 victim", e.OOMID, m)
			}
		}
	})

	t.Run("group kill", func(t *testing.T) {
		kills := by(event.KindOOMKill, "/s2")
		if len(kills) != 3 {
			for _, e := range kills {
				t.Logf("kill: oom_id %d pid %d tid %d comm %s", e.OOMID, e.Victim.PID, e.Victim.TID, e.Victim.Comm)
			}
			t.Fatalf("%d oom_kill lines for /s2, want 3 (exits %s %s %s)", len(kills), r.results["s2_exit1"], r.results["s2_exit2"], r.results["s2_exit3"])
		}
		pids := map[uint32]bool{}
		for _, e := range kills {
			if e.OOMID != kills[0].OOMID || e.OOMID == 0 {
				t.Errorf("oom_ids %d and %d: a group kill shares one", kills[0].OOMID, e.OOMID)
			}
			if !e.GroupKill {
				t.Errorf("victim %d: group_kill not set", e.Victim.PID)
			}
			pids[e.Victim.PID] = true
		}
		if len(pids) != 3 {
			t.Errorf("victims %v, want 3 distinct tasks", pids)
		}
		wantCodes(t, kills[0], diagnose.GroupKill)
	})

	t.Run("no victim", func(t *testing.T) {
		if kills := by(event.KindOOMKill, "/s3"); len(kills) != 0 {
			t.Errorf("%d oom_kill lines for /s3, whose only task cannot be killed", len(kills))
		}
		// The writer exits 0 only when a write failed with ENOMEM or ENOSPC
		// (it cannot say so on a file: that write would be charged too).
		if r.results["s3_exit"] != "0" {
			t.Errorf("writer exit %s, want 0 after a failed write", r.results["s3_exit"])
		}
		if !memcgHook {
			t.Skip("skipped: no hook on mem_cgroup_out_of_memory on the tracepoint tier: such an OOM is invisible there")
		}
		m := by(event.KindMemcgOOM, "/s3")
		if len(m) == 0 {
			t.Fatal("no memcg_oom record for /s3")
		}
		failed := false
		for _, e := range m {
			if *e.VictimFound || *e.Victims != 0 {
				t.Errorf("memcg_oom for /s3 says victim_found %v victims %d", *e.VictimFound, *e.Victims)
			}
			failed = failed || !*e.Handled
		}
		if !failed {
			t.Error("no memcg_oom for /s3 with oom_handled false: the charge that got ENOMEM is not among them")
		}
	})

	t.Run("global OOM", func(t *testing.T) {
		var kills []*event.Event
		for _, e := range by(event.KindOOMKill, "") {
			if e.Victim.Cgroup == "/" {
				kills = append(kills, e)
			}
		}
		if r.results["s4_exit"] != "137" || len(kills) != 1 {
			t.Fatalf("hog exit %s, %d oom_kill lines in the root cgroup, want 137 and 1", r.results["s4_exit"], len(kills))
		}
		e := kills[0]
		if e.Constraint != event.ConstraintGlobal || e.Memcg != nil || e.Victim.Comm != "memhog" {
			t.Errorf("constraint %q memcg %+v victim %q, want global and the hog", e.Constraint, e.Memcg, e.Victim.Comm)
		}
		if contextHooks && (e.OOM == nil || e.OOM.DomainBytes < 256<<20) {
			t.Errorf("oom context %+v: want the VM's memory as the domain", e.OOM)
		}
		wantCodes(t, e, diagnose.GlobalOOM)
		checkAgentSurvived(t, r)
	})

	logged, err := kernelConstraints(r.res.Section("oomlog"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("constraint as the kernel logged it", func(t *testing.T) {
		checkLoggedConstraints(t, by(event.KindOOMKill, ""), logged, contextHooks)
		if t.Failed() {
			t.Logf("the kernel's oom-kill lines:\n%s", r.res.Section("oomlog"))
		}
	})

	// Node-constrained OOMs: the hog overruns node 1 (of 256 MiB) while
	// node 0 has room. The kernel says which constraint applied; the
	// tracepoint tier cannot know it and must not call it memcg.
	for _, c := range []struct{ name, cgroup, exit, kernel string }{
		{"mempolicy OOM", "/s6", "s6_exit", "CONSTRAINT_MEMORY_POLICY"},
		{"cpuset OOM", "/s7", "s7_exit", "CONSTRAINT_CPUSET"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kills := by(event.KindOOMKill, c.cgroup)
			if r.results[c.exit] != "137" || len(kills) != 1 {
				t.Fatalf("hog exit %s, %d oom_kill lines for %s, want 137 and 1", r.results[c.exit], len(kills), c.cgroup)
			}
			e := kills[0]
			k, ok := logged[e.Victim.PID]
			if !ok {
				t.Fatalf("the kernel logged no oom-kill line for pid %d", e.Victim.PID)
			}
			if k.kernelName != c.kernel {
				t.Errorf("the kernel logged %s for the hog in %s, want %s: the scenario did not cause the OOM it is meant to", k.kernelName, c.cgroup, c.kernel)
			}
			want := k.constraint
			if !contextHooks {
				want = event.ConstraintGlobal
			}
			if e.Constraint != want || e.Memcg != nil {
				t.Errorf("constraint %q memcg %+v; the kernel logged %s: want %q and no memcg", e.Constraint, e.Memcg, k.kernelName, want)
			}
			if contextHooks && (e.OOM == nil || e.OOM.DomainBytes > 256<<20 || e.OOM.DomainBytes < 128<<20) {
				t.Errorf("oom context %+v: want node 1's memory (256 MiB less the kernel's share) as the domain", e.OOM)
			}
			if contextHooks {
				wantCodes(t, e)
			} else {
				wantCodes(t, e, diagnose.GlobalOOM)
			}
		})
	}

	t.Run("global OOM, victim at its cgroup's limit", func(t *testing.T) {
		var current, max uint64
		fmt.Sscan(r.results["s8_current"], &current)
		fmt.Sscan(r.results["s8_max"], &max)
		if current == 0 || max > current+1<<20 {
			t.Fatalf("/s8 uses %d of a %d limit: the scenario did not put the victim at its limit", current, max)
		}
		kills := by(event.KindOOMKill, "/s8")
		if r.results["s8_victim_exit"] != "137" || len(kills) != 1 {
			t.Fatalf("victim exit %s, %d oom_kill lines for /s8, want 137 and 1", r.results["s8_victim_exit"], len(kills))
		}
		e := kills[0]
		k, ok := logged[e.Victim.PID]
		if !ok {
			t.Fatalf("the kernel logged no oom-kill line for pid %d", e.Victim.PID)
		}
		if k.kernelName != "CONSTRAINT_NONE" {
			t.Errorf("the kernel logged %s for the victim in /s8, want CONSTRAINT_NONE: the scenario did not cause a global OOM", k.kernelName)
		}
		// Every tier: the kernel's word where a hook saw it; on the
		// tracepoint tier /s8 is not the trigger's cgroup, so its page
		// counters are not taken for the limit that fired.
		if e.Constraint != event.ConstraintGlobal || e.Memcg != nil {
			t.Errorf("constraint %q memcg %+v, want global and no memcg: /s8 was at its limit, but the OOM was the VM's", e.Constraint, e.Memcg)
		}
		if e.Victim.OOMScoreAdj != 1000 || e.Trigger.Cgroup != "/s8t" {
			t.Errorf("victim oom_score_adj %d, trigger in %q: want 1000 and /s8t", e.Victim.OOMScoreAdj, e.Trigger.Cgroup)
		}
		wantCodes(t, e, diagnose.GlobalOOM)
		checkAgentSurvived(t, r)
	})

	t.Run("vmstat", func(t *testing.T) {
		// One line per killed process, as many as the kernel counts. The
		// group kill is left out: there the kernel counts each thread of a
		// member it reaches (and the chosen victim again), not processes.
		n := map[string]int{}
		for _, k := range []string{"vmstat_before", "vmstat_after", "vmstat_s2_before", "vmstat_s2_after"} {
			var v int
			fmt.Sscan(r.results[k], &v)
			n[k] = v
		}
		kernel := n["vmstat_after"] - n["vmstat_before"] - (n["vmstat_s2_after"] - n["vmstat_s2_before"])
		if got := len(by(event.KindOOMKill, "")) - len(by(event.KindOOMKill, "/s2")); got != kernel {
			t.Errorf("%d oom_kill lines outside the group kill; the kernel counted %d", got, kernel)
		}
	})

	t.Run("huge pages: order 9 __GFP_NOWARN", func(t *testing.T) {
		var found *event.Event
		for _, e := range by(event.KindAllocFailure, "") {
			if e.Alloc.Order == 9 && e.Alloc.NoWarn {
				found = e
			}
		}
		if found == nil {
			t.Fatalf("no order-9 __GFP_NOWARN alloc_failure (nr_hugepages reached %s)", r.results["s5_hugepages"])
		}
		if !strings.Contains(found.Alloc.GFP, "__GFP_RETRY_MAYFAIL") || !strings.Contains(found.Alloc.GFP, "__GFP_NOWARN") {
			t.Errorf("gfp %q (%#x), want __GFP_NOWARN|__GFP_RETRY_MAYFAIL", found.Alloc.GFP, found.Alloc.GFPMask)
		}
		wantSource := map[string]string{"kprobe": "warn_alloc", "fentry": "warn_alloc", "tracepoint": "mm_page_alloc"}[r.tier]
		if found.Alloc.Source != wantSource {
			t.Errorf("source %q on tier %s, want %q", found.Alloc.Source, r.tier, wantSource)
		}
	})

	t.Run("warned order-10 failures", func(t *testing.T) {
		if g.modules[r.kernel.Name()] == "" {
			t.Skip(g.moduleSkip(r.kernel))
		}
		var n int
		var sample *event.Event
		for _, e := range by(event.KindAllocFailure, "") {
			if e.Alloc.Order == 10 {
				n++
				sample = e
			}
		}
		if n == 0 {
			t.Fatalf("no order-10 alloc_failure (insmod exit %s)", r.results["s5b_insmod"])
		}
		if sample.Alloc.NoWarn || sample.Alloc.GFP != "GFP_KERNEL|__GFP_NORETRY" {
			t.Errorf("gfp %q nowarn %v, want GFP_KERNEL|__GFP_NORETRY", sample.Alloc.GFP, sample.Alloc.NoWarn)
		}
		if !eventtest.HasFrame(sample.Stack, "do_one_initcall") {
			t.Errorf("stack lacks the module's init call: %v", sample.Stack)
		}
		t.Logf("%d order-10 failures reported; the kernel log printed %s (ratelimited)", n, r.results["dmesg_alloc_failure_lines"])
	})
}

// wantCodes checks the diagnosis has exactly these codes. The scenarios'
// cgroups are not a pod's: no pod, container or QoS codes.
func wantCodes(t *testing.T, e *event.Event, want ...string) {
	t.Helper()
	var got []string
	for _, f := range e.Diagnosis {
		got = append(got, f.Code)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("diagnosis %v, want codes %v", e.Diagnosis, want)
	}
}

// bootOnce boots, and boots again once if the guest died without running
// the scenario to its end: Debian's kernels under qemu's software
// emulation (TCG) occasionally crash on their own, in code oomtrace does
// not touch (seen: an IPI handler in 6.12's idle loop). The first crash is
// logged; a second fails the test.
func bootOnce(t *testing.T, ctx context.Context, opts vmtest.BootOptions) (vmtest.Result, error) {
	t.Helper()
	res, err := vmtest.Boot(ctx, opts)
	if err != nil && res.ExitStatus == -1 && ctx.Err() == nil && !strings.Contains(err.Error(), "timed out") {
		t.Logf("boot %s failed, booting again: %v\nconsole (end):\n%s", opts.Kernel.Release, err, lastLines(res.Console, 15))
		res, err = vmtest.Boot(ctx, opts)
	}
	return res, err
}

// vmTimeout is how long a VM of kernel k may run, given how long an amd64
// one may. arm64 gets three times as long: its emulation (-cpu max) does
// more per guest instruction, and on this shared, loaded host single
// arm64 runs took up to 256 s; a hung guest still fails, only later.
func vmTimeout(k vmtest.Kernel, amd64 time.Duration) time.Duration {
	if arch(k) == vmtest.ARM64.Name {
		return 3 * amd64
	}
	return amd64
}

// consoleLog is where a VM's console goes as it arrives, for watching a
// slow run: a file in $OOMTRACE_VM_CONSOLE_DIR, when that is set.
func consoleLog(t *testing.T, name string) io.Writer {
	dir := os.Getenv("OOMTRACE_VM_CONSOLE_DIR")
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Logf("console log: %v", err)
		return nil
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// kernelTable renders docs/kernels.md from the runs.
func kernelTable(runs []*run) string {
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if arch(a.kernel) != arch(b.kernel) {
			return indexOf(archNames(), arch(a.kernel)) < indexOf(archNames(), arch(b.kernel))
		}
		if a.kernel.Series != b.kernel.Series {
			return indexOf(vmtest.Series, a.kernel.Series) < indexOf(vmtest.Series, b.kernel.Series)
		}
		return indexOf(tiers, a.tier) < indexOf(tiers, b.tier)
	})
	var b bytes.Buffer
	b.WriteString("# Kernels and tiers\n\n")
	b.WriteString("Generated by the kernel matrix (`make vmtest`): each Debian cloud kernel,\n")
	b.WriteString("amd64 and arm64, booted under qemu (software emulation), `oomtrace check\n")
	b.WriteString("--tier T --json` per tier, then every scenario with that tier forced. The\n")
	b.WriteString("check column is that command's verdict and exit status; a hook's cell is the\n")
	b.WriteString("tier it used; `none` means not attached (see the reasons below the table).\n")
	b.WriteString("The amd64 kernel after 6.12 is the newest cloud kernel the Debian archive\n")
	b.WriteString("offered when the table was made (backports, testing, unstable).\n\n")
	b.WriteString("| kernel | arch | --tier | `oomtrace check` | oom:mark_victim | oom_kill_process | __oom_kill_process | mem_cgroup_out_of_memory | page_alloc_failure |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	var notes, refusals []string
	for _, r := range runs {
		verdict := fmt.Sprintf("traces (exit %s)", r.results["check_exit"])
		if !r.check.CanTrace {
			verdict = fmt.Sprintf("refused (exit %s)", r.results["check_exit"])
			var instead []string
			for _, h := range r.auto.Hooks {
				instead = append(instead, h.Hook+" "+h.Tier)
			}
			refusals = append(refusals, fmt.Sprintf("- %s, --tier=%s refused; without --tier: %s", r.kernel.Release, r.tier, strings.Join(instead, ", ")))
			fmt.Fprintf(&b, "| %s | %s | %s | %s | refused: %s | | | | |\n", r.kernel.Release, arch(r.kernel), r.tier, verdict, strings.ReplaceAll(r.check.Conclusion, "|", "/"))
			continue
		}
		cells := map[string]string{}
		for _, h := range r.check.Hooks {
			cells[h.Hook] = h.Tier
			if h.Tier == "none" {
				notes = append(notes, fmt.Sprintf("- %s, --tier=%s, %s: %s", r.kernel.Release, r.tier, h.Hook, h.Detail))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.kernel.Release, arch(r.kernel), r.tier, verdict,
			cells["oom:mark_victim"], cells["oom_kill_process"], cells["__oom_kill_process"], cells["mem_cgroup_out_of_memory"], cells["page_alloc_failure"])
	}
	if len(refusals) > 0 {
		b.WriteString("\nWhere a tier is refused, the tiers `oomtrace check` (and the agent) use without --tier:\n\n")
		b.WriteString(strings.Join(refusals, "\n"))
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nWhy a hook is not attached:\n\n")
		b.WriteString(strings.Join(notes, "\n"))
		b.WriteString("\n")
	}
	b.WriteString(kernelFacts(runs))
	b.WriteString(archNotes)
	b.WriteString("\nThe development machine's own kernel (6.18, no kprobes, no BPF trampolines)\n")
	b.WriteString("runs the tracepoint tier only; `oomtrace check` there shows the same table row.\n")
	return b.String()
}

// archNotes says what the matrix proves differs, or does not, on arm64:
// the table is written only when every scenario passed, so each sentence
// is what its assertions checked on every arm64 row.
const archNotes = `
On arm64:

- fentry: the table above says, per kernel, whether BPF trampolines
  attach. Where they do not, ` + "`--tier fentry`" + ` is refused naming what is
  missing, and without --tier the agent and ` + "`oomtrace check`" + ` use kprobes
  for those hooks, listing fentry as passed over with the same reason.
- kprobe on warn_alloc: it attaches as on amd64; the order, warn_alloc's
  4th argument (a variadic one: register x3 on arm64, rcx on x86-64), is
  read right: the huge page failures are reported as order 9 on the
  kprobe and fentry tiers, from warn_alloc, and the test module's as
  order 10 with GFP_KERNEL|__GFP_NORETRY.
- page size: Debian's arm64 cloud kernels use 4 KiB pages, like amd64
  (the page size column); the event fields are bytes either way.
- kernel stacks are unwound through frame pointers (arm64 has no ORC):
  every memcg OOM's stack begins in the OOM code and holds
  out_of_memory (on 5.10's kprobe tier it may end at oom_kill_process),
  the same check as on amd64; symbols are named from /proc/kallsyms.
- the same scenarios run with the same assertions, in VMs with the same
  memory and two NUMA nodes (qemu's virt board, -cpu max).
- the DMA zone is the low GiBs of RAM (all of these VMs' memory) and
  serves every allocation, so an allocation failure's free memory counts
  it; on x86-64 the 16 MiB DMA zone is left out unless the allocation
  asked for it.
`

// kernelFacts is a table of what each kernel offers, as its VMs measured
// it: the page size, and what `oomtrace check` found of BPF trampolines
// (fentry) and kprobes.
func kernelFacts(runs []*run) string {
	var b bytes.Buffer
	b.WriteString("\nWhat each kernel offers, as measured in its VMs:\n\n")
	b.WriteString("| kernel | arch | page size | fentry (BPF trampolines) | kprobes |\n|---|---|---|---|---|\n")
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r.kernel.Release] {
			continue
		}
		seen[r.kernel.Release] = true
		support := func(tier string) string {
			s, ok := r.check.Tiers[tier]
			switch {
			case !ok:
				return "not probed"
			case s.OK:
				return "yes"
			}
			return "no: " + strings.ReplaceAll(s.Detail, "|", "/")
		}
		fmt.Fprintf(&b, "| %s | %s | %s KiB | %s | %s |\n", r.kernel.Release, arch(r.kernel), r.results["page_size_kib"], support("fentry"), support("kprobe"))
	}
	return b.String()
}

func archNames() []string {
	var out []string
	for _, a := range vmtest.Arches {
		out = append(out, a.Name)
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}
