// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Task is one process as the OOM killer's task table shows it.
type Task struct {
	PID           int
	NSPID         int // pid in its own (innermost) pid namespace, from NSpid in /proc/PID/status
	Comm          string
	RSSBytes      uint64 // RssAnon+RssFile+RssShmem (VmRSS)
	AnonBytes     uint64
	FileBytes     uint64
	ShmemBytes    uint64
	SwapBytes     uint64
	PgtablesBytes uint64 // VmPTE
	OOMScoreAdj   int
	Points        int64 // as the kernel's oom_badness computes it, see Points
}

// Bounds of /proc/PID/oom_score_adj (OOM_SCORE_ADJ_MIN/MAX).
const (
	oomScoreAdjMin = -1000
	oomScoreAdjMax = 1000
)

// ReadTask reads /proc/PID/status and /proc/PID/oom_score_adj. Points is
// left zero: it depends on the OOM domain, see TopTasks and Points. A process
// that exited gives an error wrapping os.ErrNotExist. A kernel thread or a
// zombie has no memory lines and reads as a Task with zero memory.
func ReadTask(pid int) (Task, error) {
	t, _, err := readTask(procRoot, pid)
	return t, err
}

// readTask is ReadTask under root; hasMM tells whether the task has an
// address space, which the kernel requires of a victim (find_lock_task_mm).
func readTask(root string, pid int) (t Task, hasMM bool, err error) {
	if pid <= 0 {
		return Task{}, false, fmt.Errorf("read task: invalid pid %d", pid)
	}
	dir := filepath.Join(root, strconv.Itoa(pid))
	status := filepath.Join(dir, "status")
	data, err := readProcFile(status)
	if err != nil {
		return Task{}, false, fmt.Errorf("read task %d: %w", pid, err)
	}
	t, hasMM, err = parseStatus(bytes.NewReader(data))
	if err != nil {
		return Task{}, false, fmt.Errorf("read task %d: %s: %w", pid, status, err)
	}
	adjPath := filepath.Join(dir, "oom_score_adj")
	data, err = readProcFile(adjPath)
	if err != nil {
		return Task{}, false, fmt.Errorf("read task %d: %w", pid, err)
	}
	if t.OOMScoreAdj, err = parseOOMScoreAdj(string(data)); err != nil {
		return Task{}, false, fmt.Errorf("read task %d: %s: %w", pid, adjPath, err)
	}
	return t, hasMM, nil
}

func parseOOMScoreAdj(s string) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("oom_score_adj %s: expected an integer", excerpt(s))
	}
	if v < oomScoreAdjMin || v > oomScoreAdjMax {
		return 0, fmt.Errorf("oom_score_adj %d: expected a value in [%d, %d]", v, oomScoreAdjMin, oomScoreAdjMax)
	}
	return v, nil
}

// ParseStatus parses the text of /proc/PID/status into the fields of Task
// that file holds: PID, NSPID, Comm and the memory counters. OOMScoreAdj and
// Points are left zero. Name and Pid must be present; the memory lines are
// absent for kernel threads and zombies and then read as zero.
func ParseStatus(r io.Reader) (Task, error) {
	t, _, err := parseStatus(r)
	return t, err
}

func parseStatus(r io.Reader) (t Task, hasMM bool, err error) {
	var haveName, havePid, haveNSpid, haveRSS bool
	sc := newScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return Task{}, false, fmt.Errorf(`status line %d %s: expected "Key:<tab>value"`, n, excerpt(line))
		}
		switch key {
		case "Name":
			// The kernel prints comm after one tab, escaping only '\n' and
			// '\\'; anything else, leading spaces included, is the name.
			t.Comm, haveName = unescapeComm(strings.TrimPrefix(val, "\t")), true
		case "Pid":
			t.PID, err = parsePID(val)
			havePid = true
		case "NSpid":
			// One pid per nested namespace, from the reader's down to the
			// task's own: the last one is what the task sees as its pid.
			f := strings.Fields(val)
			if len(f) == 0 {
				err = errors.New("expected one or more pids")
			}
			for _, s := range f {
				if t.NSPID, err = parsePID(s); err != nil {
					break
				}
			}
			haveNSpid = true
		case "VmRSS":
			t.RSSBytes, err = parseKB(val)
			haveRSS, hasMM = true, true
		case "RssAnon":
			t.AnonBytes, err = parseKB(val)
			hasMM = true
		case "RssFile":
			t.FileBytes, err = parseKB(val)
			hasMM = true
		case "RssShmem":
			t.ShmemBytes, err = parseKB(val)
			hasMM = true
		case "VmSwap":
			t.SwapBytes, err = parseKB(val)
		case "VmPTE":
			t.PgtablesBytes, err = parseKB(val)
		}
		if err != nil {
			return Task{}, false, fmt.Errorf("status line %d %s: %s: %w", n, excerpt(line), key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Task{}, false, fmt.Errorf("status: %w", err)
	}
	switch {
	case !haveName:
		return Task{}, false, errors.New("status: no Name line")
	case !havePid:
		return Task{}, false, errors.New("status: no Pid line")
	}
	if !haveNSpid {
		// Kernels without CONFIG_PID_NS have no NSpid: one namespace only.
		t.NSPID = t.PID
	}
	if !haveRSS {
		// VmRSS is printed as the sum of these three; keep the invariant.
		t.RSSBytes = addSat(addSat(t.AnonBytes, t.FileBytes), t.ShmemBytes)
	}
	return t, hasMM, nil
}

func parsePID(s string) (int, error) {
	s = strings.TrimSpace(s)
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%s: expected a positive pid", excerpt(s))
	}
	return v, nil
}

// parseKB parses a status memory value such as "    1724 kB" into bytes.
func parseKB(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf(`%s: expected "<n> kB"`, excerpt(strings.TrimSpace(s)))
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: expected an unsigned number of kB", excerpt(f[0]))
	}
	if v > math.MaxUint64/1024 {
		return 0, fmt.Errorf("%d kB: too large to count in bytes", v)
	}
	return v * 1024, nil
}

// unescapeComm undoes the kernel's escaping of comm in status ("\n" for a
// newline, "\\" for a backslash); other backslashes are kept as they are.
func unescapeComm(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Points is the kernel's oom_badness() (mm/oom_kill.c, unchanged from 5.10
// to 6.18) for a task of an OOM domain of totalPages pages (the memcg limit,
// or RAM+swap for a global OOM):
//
//	points = get_mm_rss (anon+file+shmem pages) + MM_SWAPENTS
//	         + mm_pgtables_bytes / PAGE_SIZE
//	adj    = (long)oom_score_adj * (totalpages / 1000)
//	return points + adj
//
// totalpages is divided by 1000 before the multiplication, so adj moves in
// steps of totalPages/1000 pages; the result may be negative. A task at
// oom_score_adj -1000 is never chosen: Points returns math.MinInt64 for it
// (LONG_MIN in the kernel). Arithmetic wraps like the kernel's long.
//
// What /proc cannot show is not modelled: the kernel also returns LONG_MIN
// for kernel threads and global init, for an mm already reaped
// (MMF_OOM_SKIP) and for a task in vfork. Older kernels (4.x) clamped the
// result to at least 1 and took 3% off the memory part of CAP_SYS_ADMIN
// tasks; 5.10 and later do neither. A pageSize of 0 means this machine's
// page size.
func Points(t Task, totalPages, pageSize uint64) int64 {
	if t.OOMScoreAdj <= oomScoreAdjMin {
		return math.MinInt64
	}
	if pageSize == 0 {
		pageSize = uint64(os.Getpagesize())
	}
	pages := t.RSSBytes/pageSize + t.SwapBytes/pageSize + t.PgtablesBytes/pageSize
	adj := int64(t.OOMScoreAdj) * int64(totalPages/1000)
	return int64(pages) + adj
}

// TopTasks reads the given pids, computes Points with totalPages (the OOM
// domain's size in pages: the memcg limit, or RAM+swap) and returns the n
// with the most points, highest first; ties go to the larger RSS, then the
// lower pid. Pids that exited meanwhile, or cannot be read, are skipped, as
// are tasks without an address space (kernel threads, zombies), which the
// kernel never chooses either. Tasks at oom_score_adj -1000 are kept, last,
// with Points math.MinInt64: they can hold the memory that is missing.
func TopTasks(pids []int, n int, totalPages uint64, pageSize uint64) []Task {
	return topTasks(pids, n, totalPages, pageSize, func(pid int) (Task, bool, error) {
		return readTask(procRoot, pid)
	})
}

func topTasks(pids []int, n int, totalPages, pageSize uint64, read func(int) (Task, bool, error)) []Task {
	if n <= 0 {
		return nil
	}
	tasks := make([]Task, 0, len(pids))
	seen := make(map[int]bool, len(pids))
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		t, hasMM, err := read(pid)
		if err != nil || !hasMM {
			continue // exited meanwhile, unreadable, or no memory to free
		}
		t.Points = Points(t, totalPages, pageSize)
		tasks = append(tasks, t)
	}
	slices.SortFunc(tasks, func(a, b Task) int {
		if c := cmp.Compare(b.Points, a.Points); c != 0 {
			return c
		}
		if c := cmp.Compare(b.RSSBytes, a.RSSBytes); c != 0 {
			return c
		}
		return cmp.Compare(a.PID, b.PID)
	})
	if len(tasks) > n {
		tasks = slices.Clip(tasks[:n])
	}
	return tasks
}
