// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// `cat /proc/self/status` on this machine (6.18, x86_64), verbatim.
const statusThisMachine = `Name:	cat
Umask:	0022
State:	R (running)
Tgid:	10400
Ngid:	0
Pid:	10400
PPid:	10398
TracerPid:	0
Uid:	0	0	0	0
Gid:	0	0	0	0
FDSize:	256
Groups:	 
NStgid:	10400
NSpid:	10400
NSpgid:	10398
NSsid:	7521
Kthread:	0
VmPeak:	    3060 kB
VmSize:	    3060 kB
VmLck:	       0 kB
VmPin:	       0 kB
VmHWM:	    1588 kB
VmRSS:	    1588 kB
RssAnon:	     112 kB
RssFile:	    1476 kB
RssShmem:	       0 kB
VmData:	     360 kB
VmStk:	     132 kB
VmExe:	      20 kB
VmLib:	    1528 kB
VmPTE:	      48 kB
VmSwap:	       0 kB
HugetlbPages:	       0 kB
CoreDumping:	0
THP_enabled:	1
untag_mask:	0xffffffffffffffff
Threads:	1
SigQ:	0/96365
SigPnd:	0000000000000000
ShdPnd:	0000000000000000
SigBlk:	0000000000000000
SigIgn:	0000000000000000
SigCgt:	0000000000000000
CapInh:	0000000000000000
CapPrm:	000001fffeffffff
CapEff:	000001fffeffffff
CapBnd:	000001fffeffffff
CapAmb:	0000000000000000
NoNewPrivs:	0
Seccomp:	0
Seccomp_filters:	0
Speculation_Store_Bypass:	vulnerable
SpeculationIndirectBranch:	always enabled
Cpus_allowed:	3
Cpus_allowed_list:	0-1
Mems_allowed:	00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001
Mems_allowed_list:	0
voluntary_ctxt_switches:	0
nonvoluntary_ctxt_switches:	1
`

// kthreadd on this machine: a kernel thread has no Vm*/Rss* lines.
const statusKthread = `Name:	kthreadd
Umask:	0022
State:	S (sleeping)
Tgid:	2
Ngid:	0
Pid:	2
PPid:	0
TracerPid:	0
Uid:	0	0	0	0
Gid:	0	0	0	0
FDSize:	64
Groups:	 
NStgid:	2
NSpid:	2
NSpgid:	0
NSsid:	0
Kthread:	1
Threads:	1
SigQ:	0/96365
SigPnd:	0000000000000000
CapEff:	000001ffffffffff
NoNewPrivs:	0
`

// statusInContainer is the same cat seen from the host while it runs as
// pid 7 of a container's pid namespace.
var statusInContainer = strings.NewReplacer(
	"Tgid:\t10400", "Tgid:\t4242",
	"Pid:\t10400", "Pid:\t4242",
	"NStgid:\t10400", "NStgid:\t4242\t7",
	"NSpid:\t10400", "NSpid:\t4242\t7",
).Replace(statusThisMachine)

func mustParseStatus(t *testing.T, text string) (Task, bool) {
	t.Helper()
	task, hasMM, err := parseStatus(strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseStatus: %v", err)
	}
	return task, hasMM
}

func TestParseStatusThisMachine(t *testing.T) {
	got, hasMM := mustParseStatus(t, statusThisMachine)
	want := Task{
		PID: 10400, NSPID: 10400, Comm: "cat",
		RSSBytes: 1588 << 10, AnonBytes: 112 << 10, FileBytes: 1476 << 10, ShmemBytes: 0,
		SwapBytes: 0, PgtablesBytes: 48 << 10,
	}
	if got != want {
		t.Errorf("ParseStatus =\n %+v, want\n %+v", got, want)
	}
	if !hasMM {
		t.Error("hasMM = false for a process with memory lines")
	}
	if got.RSSBytes != got.AnonBytes+got.FileBytes+got.ShmemBytes {
		t.Error("VmRSS is not RssAnon+RssFile+RssShmem")
	}
	// The exported function gives the same.
	if exp, err := ParseStatus(strings.NewReader(statusThisMachine)); err != nil || exp != want {
		t.Errorf("ParseStatus = %+v, %v", exp, err)
	}
}

func TestParseStatusNSpid(t *testing.T) {
	got, _ := mustParseStatus(t, statusInContainer)
	if got.PID != 4242 || got.NSPID != 7 {
		t.Errorf("pid %d ns_pid %d, want 4242 and 7 (the last NSpid value)", got.PID, got.NSPID)
	}
	// Nested namespaces: still the innermost, last value.
	got, _ = mustParseStatus(t, "Name:\tsh\nPid:\t4242\nNSpid:\t4242\t100\t7\n")
	if got.NSPID != 7 {
		t.Errorf("three levels: ns_pid %d, want 7", got.NSPID)
	}
	// No NSpid line (CONFIG_PID_NS off, or before 4.1): one namespace.
	got, _ = mustParseStatus(t, "Name:\tsh\nPid:\t99\nVmRSS:\t 8 kB\n")
	if got.NSPID != 99 {
		t.Errorf("without NSpid: ns_pid %d, want the pid 99", got.NSPID)
	}
}

func TestParseStatusKthreadAndOldKernels(t *testing.T) {
	got, hasMM := mustParseStatus(t, statusKthread)
	if hasMM || got.RSSBytes != 0 || got.PID != 2 || got.Comm != "kthreadd" {
		t.Errorf("kthreadd: %+v hasMM %v, want no memory and hasMM false", got, hasMM)
	}
	// Before 4.5 there is VmRSS but no RssAnon/RssFile/RssShmem.
	got, hasMM = mustParseStatus(t, "Name:\told\nPid:\t5\nVmRSS:\t 400 kB\nVmPTE:\t 12 kB\nVmSwap:\t 8 kB\n")
	if !hasMM || got.RSSBytes != 400<<10 || got.PgtablesBytes != 12<<10 || got.SwapBytes != 8<<10 {
		t.Errorf("VmRSS only: %+v hasMM %v", got, hasMM)
	}
	// The parts without the total: the total is their sum.
	got, _ = mustParseStatus(t, "Name:\tx\nPid:\t5\nRssAnon:\t 4 kB\nRssFile:\t 8 kB\nRssShmem:\t 12 kB\n")
	if got.RSSBytes != 24<<10 {
		t.Errorf("RSS from parts = %d, want %d", got.RSSBytes, 24<<10)
	}
}

func TestParseStatusComm(t *testing.T) {
	for in, want := range map[string]string{
		`Name:	kworker/0:1H`:   "kworker/0:1H", // a colon in the name
		"Name:\t  two spaces ": "  two spaces ",
		`Name:	a\nb`:           "a\nb", // the kernel escapes a newline
		`Name:	back\\slash`:    `back\slash`,
		`Name:	keep\t\`:        `keep\t\`, // only \n and \\ are escapes
		"Name:\t":              "",
	} {
		got, _ := mustParseStatus(t, in+"\nPid:\t1\n")
		if got.Comm != want {
			t.Errorf("%q: comm %q, want %q", in, got.Comm, want)
		}
	}
}

func TestParseStatusMalformed(t *testing.T) {
	const head = "Name:\tx\nPid:\t10\n"
	for _, tc := range []struct {
		text string
		want []string // substrings of the error
	}{
		{"", []string{"no Name line"}},
		{"Name:\tx\n", []string{"no Pid line"}},
		{"Pid:\t1\n", []string{"no Name line"}},
		{head + "garbage\n", []string{"line 3", `"garbage"`, `expected "Key:<tab>value"`}},
		{"Name:\tx\nPid:\tten\n", []string{"line 2", "Pid", `"ten"`, "positive pid"}},
		{"Name:\tx\nPid:\t0\n", []string{"Pid", "positive pid"}},
		{"Name:\tx\nPid:\t-4\n", []string{"Pid", "positive pid"}},
		{head + "NSpid:\t\n", []string{"line 3", "NSpid", "one or more pids"}},
		{head + "NSpid:\t10\tx\n", []string{"NSpid", `"x"`}},
		{head + "VmRSS:\t 12 MB\n", []string{"line 3", "VmRSS", `expected "<n> kB"`}},
		{head + "VmRSS:\t 12\n", []string{"VmRSS", `expected "<n> kB"`}},
		{head + "RssAnon:\t x kB\n", []string{"RssAnon", "unsigned number of kB"}},
		{head + "RssFile:\t -1 kB\n", []string{"RssFile", `"-1"`}},
		{head + "VmSwap:\t 18446744073709551615 kB\n", []string{"VmSwap", "too large"}},
		{head + "VmPTE:\t 1 kB 2\n", []string{"VmPTE"}},
		{head + strings.Repeat("z", 300) + "\n", []string{"line 3", `"...`}},
		{head + "Name:\t" + strings.Repeat("z", maxLine) + "\n", []string{"status", "too long"}},
	} {
		task, err := ParseStatus(strings.NewReader(tc.text))
		if err == nil {
			t.Errorf("ParseStatus(%.60q) = %+v, want an error", tc.text, task)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseStatus(%.60q) error %q does not contain %q", tc.text, err, w)
			}
		}
	}
}

// The memcg OOM of seed 000 (Ubuntu 4.15.0-46, k3s pod limited to 123 MiB):
//
//	memory: usage 125952kB, limit 125952kB
//	[ pid ] uid tgid total_vm rss pgtables_bytes swapents oom_score_adj name
//	[25160] 0 25160   256     1  28672 0 -998 pause
//	[25218] 0 25218  4627   872  77824 0  939 bash
//	[32307] 0 32307  2060   275  57344 0  939 stress
//	[32308] 0 32308 27661 24953 253952 0  939 stress
//	[32331] 0 32331  2060   304  53248 0  939 stress
//	[32332] 0 32332 14861  5829 102400 0  939 stress
//	Memory cgroup out of memory: Kill process 32308 (stress) score 1718 or sacrifice child
var seedTasks = []Task{
	{PID: 25160, Comm: "pause", RSSBytes: 1 * 4096, PgtablesBytes: 28672, OOMScoreAdj: -998},
	{PID: 25218, Comm: "bash", RSSBytes: 872 * 4096, PgtablesBytes: 77824, OOMScoreAdj: 939},
	{PID: 32307, Comm: "stress", RSSBytes: 275 * 4096, PgtablesBytes: 57344, OOMScoreAdj: 939},
	{PID: 32308, Comm: "stress", RSSBytes: 24953 * 4096, PgtablesBytes: 253952, OOMScoreAdj: 939},
	{PID: 32331, Comm: "stress", RSSBytes: 304 * 4096, PgtablesBytes: 53248, OOMScoreAdj: 939},
	{PID: 32332, Comm: "stress", RSSBytes: 5829 * 4096, PgtablesBytes: 102400, OOMScoreAdj: 939},
}

// seedLimitPages is the memcg limit in pages: 125952 kB / 4 kB. Swap was
// off, so mem_cgroup_get_max() was the memory limit alone.
const seedLimitPages = 125952 / 4 // 31488

// What is comparable with "score 1718": 4.15 printed not oom_badness() but
// oc->chosen_points * 1000 / oc->totalpages, a rescaling select_bad_process()
// applied after choosing (dropped with the "sacrifice child" line in 5.x).
// oom_badness() itself computed the same rss + swapents + pgtables/PAGE_SIZE
// + oom_score_adj * (totalpages/1000) that Points does for 5.10..6.18, with
// two differences that do not apply here: the result was clamped to >= 1
// (only the pause row is negative, and it was not chosen), and CAP_SYS_ADMIN
// tasks lost 3% of the memory part (stress ran in an unprivileged container;
// with the 3% off the printout would have been 53374*1000/31488 = 1695).
//
//	stress 32308: 24953 + 0 + 253952/4096 (62) = 25015 pages
//	adj: 939 * (31488/1000 = 31) = 29109          → Points 54124
//	54124 * 1000 / 31488 = 1718.87 → 1718, the kernel's score
func TestPointsSeedStress(t *testing.T) {
	stress := seedTasks[3]
	got := Points(stress, seedLimitPages, 4096)
	if got != 54124 {
		t.Fatalf("Points(stress 32308) = %d, want 54124", got)
	}
	if score := got * 1000 / seedLimitPages; score != 1718 {
		t.Errorf("4.15 score = %d, want 1718 as the kernel printed", score)
	}
}

func TestPointsSeedTable(t *testing.T) {
	want := map[int]int64{
		25160: 1 + 7 - 998*31, // -30930: 4.15 clamped it to 1; 5.10+ keeps it negative
		25218: 872 + 19 + 29109,
		32307: 275 + 14 + 29109,
		32308: 24953 + 62 + 29109,
		32331: 304 + 13 + 29109,
		32332: 5829 + 25 + 29109,
	}
	for _, task := range seedTasks {
		if got := Points(task, seedLimitPages, 4096); got != want[task.PID] {
			t.Errorf("Points(%d %s) = %d, want %d", task.PID, task.Comm, got, want[task.PID])
		}
	}
}

func TestPointsArithmetic(t *testing.T) {
	base := Task{RSSBytes: 100 * 4096, SwapBytes: 20 * 4096, PgtablesBytes: 3*4096 + 100}
	for _, tc := range []struct {
		adj        int
		totalPages uint64
		want       int64
	}{
		{0, 1 << 20, 123},           // 100 rss + 20 swap + 3 (pgtables rounded down)
		{500, 1999, 123 + 500*1},    // totalpages/1000 first: 1, not 1999*500/1000 = 999
		{-500, 2500, 123 - 500*2},   // -1000, not -1250; and negative results stay negative
		{1000, 31488, 123 + 31000},  // the maximum bias is a whole domain's worth
		{-999, 31488, 123 - 999*31}, // just above the unkillable value
		{7, 999, 123},               // domains under 1000 pages have no bias at all
		{1, math.MaxUint64, 123 + 18446744073709551},
	} {
		task := base
		task.OOMScoreAdj = tc.adj
		if got := Points(task, tc.totalPages, 4096); got != tc.want {
			t.Errorf("adj %d total %d: Points = %d, want %d", tc.adj, tc.totalPages, got, tc.want)
		}
	}
	base.OOMScoreAdj = -1000
	if got := Points(base, 31488, 4096); got != math.MinInt64 {
		t.Errorf("adj -1000: Points = %d, want math.MinInt64 (LONG_MIN)", got)
	}
	// Page size 0 is this machine's.
	base.OOMScoreAdj = 0
	if got, want := Points(base, 31488, 0), Points(base, 31488, uint64(os.Getpagesize())); got != want {
		t.Errorf("pageSize 0: %d, want %d", got, want)
	}
}

// seedReader serves tasks from a table as readTask would.
func seedReader(tasks []Task, noMM ...int) func(int) (Task, bool, error) {
	return func(pid int) (Task, bool, error) {
		for _, t := range tasks {
			if t.PID == pid {
				return t, !slices.Contains(noMM, pid), nil
			}
		}
		return Task{}, false, fmt.Errorf("read task %d: %w", pid, os.ErrNotExist)
	}
}

func pidsOf(tasks []Task) []int {
	var pids []int
	for _, t := range tasks {
		pids = append(pids, t.PID)
	}
	return pids
}

func TestTopTasksSeed(t *testing.T) {
	// 99999 exited meanwhile; 32307 is listed twice.
	pids := []int{25160, 99999, 25218, 32307, 32308, 32331, 32332, 32307}
	read := seedReader(seedTasks)

	top := topTasks(pids, 3, seedLimitPages, 4096, read)
	if got, want := pidsOf(top), []int{32308, 32332, 25218}; !slices.Equal(got, want) {
		t.Fatalf("top 3 = %v, want %v", got, want)
	}
	if top[0].Points != 54124 || top[0].Comm != "stress" {
		t.Errorf("first = %+v, want stress with 54124 points", top[0])
	}

	all := topTasks(pids, 100, seedLimitPages, 4096, read)
	if got, want := pidsOf(all), []int{32308, 32332, 25218, 32331, 32307, 25160}; !slices.Equal(got, want) {
		t.Errorf("all = %v, want %v", got, want)
	}
	if len(topTasks(pids, 0, seedLimitPages, 4096, read)) != 0 || len(topTasks(pids, -1, 1, 4096, read)) != 0 {
		t.Error("n <= 0 must give no tasks")
	}
	// A task without an address space (kernel thread, zombie) is skipped.
	noMM := topTasks(pids, 100, seedLimitPages, 4096, seedReader(seedTasks, 32308))
	if slices.Contains(pidsOf(noMM), 32308) || len(noMM) != 5 {
		t.Errorf("without 32308's mm: %v", pidsOf(noMM))
	}
}

func TestTopTasksTies(t *testing.T) {
	tasks := []Task{
		{PID: 30, RSSBytes: 10 * 4096, SwapBytes: 0},
		{PID: 20, RSSBytes: 5 * 4096, SwapBytes: 5 * 4096}, // same points, less RSS
		{PID: 10, RSSBytes: 5 * 4096, SwapBytes: 5 * 4096}, // same points and RSS, lower pid
		{PID: 40, RSSBytes: 1 << 30, OOMScoreAdj: -1000},   // never chosen: last
		{PID: 50, RSSBytes: 1 * 4096},
	}
	got := pidsOf(topTasks([]int{40, 20, 30, 10, 50}, 10, 1<<20, 4096, seedReader(tasks)))
	if want := []int{30, 10, 20, 50, 40}; !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

// A fake /proc tree exercises the file handling of readTask.
func TestReadTaskFakeProc(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, name, text string) {
		t.Helper()
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(4242, "status", statusInContainer)
	write(4242, "oom_score_adj", "939\n")
	got, hasMM, err := readTask(root, 4242)
	if err != nil || !hasMM || got.PID != 4242 || got.NSPID != 7 || got.OOMScoreAdj != 939 || got.Points != 0 {
		t.Errorf("readTask = %+v, %v, %v", got, hasMM, err)
	}

	write(5, "status", "Name:\tx\nPid:\t5\n") // exited between the two reads
	if _, _, err := readTask(root, 5); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing oom_score_adj: err %v, want os.ErrNotExist", err)
	}
	if _, _, err := readTask(root, 6); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "read task 6") {
		t.Errorf("missing pid: err %v, want os.ErrNotExist naming the pid", err)
	}
	for adj, want := range map[string]string{
		"abc\n":  "expected an integer",
		"1001\n": "expected a value in [-1000, 1000]",
		"-1001":  "expected a value in [-1000, 1000]",
		"":       "expected an integer",
	} {
		write(7, "status", "Name:\tx\nPid:\t7\n")
		write(7, "oom_score_adj", adj)
		_, _, err := readTask(root, 7)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "7/oom_score_adj") {
			t.Errorf("oom_score_adj %q: err %v, want %q naming the file", adj, err, want)
		}
	}
	write(8, "status", "Name:\tx\nPid:\tbad\n")
	write(8, "oom_score_adj", "0\n")
	if _, _, err := readTask(root, 8); err == nil || !strings.Contains(err.Error(), "8/status") {
		t.Errorf("bad status: err %v, want one naming the file", err)
	}
	if _, _, err := readTask(root, 0); err == nil || !strings.Contains(err.Error(), "invalid pid 0") {
		t.Errorf("pid 0: err %v", err)
	}
}

// Live: the test process itself, as the kernel sees it.
func TestReadTaskLive(t *testing.T) {
	pid := os.Getpid()
	task, err := ReadTask(pid)
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	if task.PID != pid || task.NSPID <= 0 {
		t.Errorf("pid %d ns_pid %d, want %d and a positive ns_pid", task.PID, task.NSPID, pid)
	}
	want := filepath.Base(os.Args[0])
	want = want[:min(len(want), 15)] // comm is TASK_COMM_LEN-1 bytes at most
	if task.Comm != want {
		t.Errorf("comm %q, want %q", task.Comm, want)
	}
	if task.RSSBytes == 0 || task.AnonBytes == 0 || task.PgtablesBytes == 0 {
		t.Errorf("a running Go test has RSS, anon memory and page tables: %+v", task)
	}
	if task.AnonBytes+task.FileBytes+task.ShmemBytes != task.RSSBytes {
		t.Errorf("RssAnon+RssFile+RssShmem = %d, VmRSS = %d", task.AnonBytes+task.FileBytes+task.ShmemBytes, task.RSSBytes)
	}
	adjText, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	if adj, _ := strconv.Atoi(strings.TrimSpace(string(adjText))); adj != task.OOMScoreAdj {
		t.Errorf("oom_score_adj %d, /proc/self/oom_score_adj says %d", task.OOMScoreAdj, adj)
	}
	t.Logf("%+v", task)

	// The kernel's own view: since 5.9 /proc/PID/oom_score is
	// (1000 + oom_badness * 1000 / totalpages) * 2 / 3 with totalpages =
	// RAM + swap. RSS moves between the two reads, so allow one point.
	if !kernelAtLeast(t, 5, 10) {
		return
	}
	totalPages := memTotalPages(t)
	points := Points(task, totalPages, 0)
	scoreText, err := os.ReadFile("/proc/self/oom_score")
	if err != nil {
		t.Fatal(err)
	}
	score, err := strconv.ParseInt(strings.TrimSpace(string(scoreText)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	wantScore := int64(0)
	if points != math.MinInt64 {
		wantScore = (1000 + points*1000/int64(totalPages)) * 2 / 3
	}
	if d := score - wantScore; d < -1 || d > 1 {
		t.Errorf("oom_score %d, from Points %d over %d pages want %d", score, points, totalPages, wantScore)
	}
	t.Logf("oom_score %d, Points %d of %d pages", score, points, totalPages)
}

func TestReadTaskExited(t *testing.T) {
	if _, err := ReadTask(1<<22 + 1); !errors.Is(err, os.ErrNotExist) { // above PID_MAX_LIMIT
		t.Errorf("pid beyond pid_max: err %v, want os.ErrNotExist", err)
	}
	path, err := exec.LookPath("true")
	if err != nil {
		t.Skip("skipped: no true(1) to run")
	}
	cmd := exec.Command(path)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	task, err := ReadTask(cmd.Process.Pid)
	if err == nil && task.Comm != "true" {
		t.Skipf("skipped: pid %d already reused by %q", task.PID, task.Comm)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exited process: %+v, err %v, want os.ErrNotExist", task, err)
	}
}

func TestTopTasksLive(t *testing.T) {
	self := os.Getpid()
	top := TopTasks([]int{1<<22 + 1, self}, 5, memTotalPages(t), 0)
	if len(top) != 1 || top[0].PID != self {
		t.Fatalf("TopTasks = %+v, want just this process", top)
	}
	if top[0].Points == 0 && top[0].OOMScoreAdj == 0 {
		t.Errorf("no points for a process with %d bytes RSS", top[0].RSSBytes)
	}
}

func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Logf("kernel version unknown: %v", err)
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(string(rel), "%d.%d", &ma, &mi); err != nil {
		t.Logf("kernel version %q: %v", rel, err)
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// memTotalPages is RAM + swap in pages, the global OOM domain.
func memTotalPages(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	var kB uint64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && (f[0] == "MemTotal:" || f[0] == "SwapTotal:") {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("meminfo %q: %v", line, err)
			}
			kB += v
		}
	}
	return kB * 1024 / uint64(os.Getpagesize())
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{
		statusThisMachine, statusKthread, statusInContainer,
		"", "Name:\tx\nPid:\t1\n", "Name:\tx\nPid:\t1\nNSpid:\t1\t2\t3\n",
		"Name:\tx\nPid:\t1\nVmRSS:\t 18014398509481983 kB\nVmSwap:\t 18014398509481983 kB\nVmPTE:\t 18014398509481983 kB\n",
		"Name:\ta\\nb\\\\\nPid:\t9\n", "Name\nPid:\t1\n", "Name:\tx\nPid:\t1\nVmRSS:\t1 MB\n",
		"Name:\tx\nPid:\t99999999999999999999\n", ":\n:\n",
		"VmRSS:\x15\x1e\x00\x15\x03\xb3\x02\x1d\x19\x90" + strings.Repeat("\xf8\xe1", 40), // binary junk quotes 4x longer
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		task, hasMM, err := parseStatus(strings.NewReader(s))
		if err != nil {
			if n := len(err.Error()); n == 0 || n > 1000 {
				t.Fatalf("error of %d bytes: %.200q", n, err)
			}
			return
		}
		if task.PID <= 0 || task.NSPID <= 0 {
			t.Fatalf("accepted pid %d ns_pid %d", task.PID, task.NSPID)
		}
		if !hasMM && (task.AnonBytes|task.FileBytes|task.ShmemBytes|task.RSSBytes) != 0 {
			t.Fatalf("memory without an mm: %+v", task)
		}
		for _, adj := range []int{-1000, -1, 0, 1000} {
			task.OOMScoreAdj = adj
			Points(task, seedLimitPages, 4096)
			Points(task, math.MaxUint64, 1)
		}
	})
}
