// SPDX-License-Identifier: Apache-2.0

package bpftest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// memoryV1 is the cgroup v1 memory hierarchy the cgroup tests build in.
const memoryV1 = "/sys/fs/cgroup/memory"

// Depths the kernfs walk must get right: one level, the deepest it keeps
// whole (CGROUP_MAX_DEPTH), and one more, which it cuts.
const maxDepth = 16

// load loads the test programs, or skips when this kernel or user cannot.
func load(t *testing.T) *HelpersObjects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: BPF_PROG_TEST_RUN needs root")
	}
	var objs HelpersObjects
	if err := LoadHelpersObjects(&objs, nil); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("skipped: the kernel cannot load the test programs: %v", err)
		}
		t.Fatalf("load test programs: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// enotsupp is the kernel's ENOTSUPP (524): no test runner for this
// program type.
const enotsupp = syscall.Errno(524)

// run runs prog once in the calling thread with args as its raw_tp
// arguments and returns its return value.
func run(t *testing.T, prog *ebpf.Program, args ...uint64) uint32 {
	t.Helper()
	opts := &ebpf.RunOptions{}
	if len(args) > 0 {
		opts.Context = args
	}
	ret, err := prog.Run(opts)
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, enotsupp) {
		t.Skipf("skipped: the kernel refuses BPF_PROG_TEST_RUN for raw_tp programs: %v", err)
	}
	if err != nil {
		t.Fatalf("run %v: %v", prog, err)
	}
	return ret
}

func TestCurrentMemcg(t *testing.T) {
	for _, depth := range []int{1, maxDepth, maxDepth + 1} {
		t.Run(fmt.Sprintf("%d_levels", depth), func(t *testing.T) {
			objs := load(t)
			requireMemoryV1(t)
			dirs := makeCgroupChain(t, depth)
			enterCgroup(t, dirs[len(dirs)-1])

			run(t, objs.ReadCurrentMemcg)
			var seen HelpersCurrentMemcg
			if err := objs.CurrentMemcgSeen.Get(&seen); err != nil {
				t.Fatal(err)
			}
			checkPath(t, &seen, dirs)
			checkLevels(t, &seen, dirs)
		})
	}
}

// checkPath: the path relative to the hierarchy's root, cut to its last
// maxDepth components and marked truncated when deeper.
func checkPath(t *testing.T, seen *HelpersCurrentMemcg, dirs []string) {
	t.Helper()
	keep := dirs[max(0, len(dirs)-maxDepth):]
	want := strings.TrimPrefix(dirs[len(dirs)-1], filepath.Dir(keep[0]))
	p := seen.Path
	got := cString(p.Path[:min(int(p.Len), len(p.Path))])
	if got != want {
		t.Errorf("path %q, want %q", got, want)
	}
	if int(p.Depth) != len(keep) {
		t.Errorf("depth %d, want %d", p.Depth, len(keep))
	}
	if wantCut := len(keep) < len(dirs); (p.Truncated != 0) != wantCut {
		t.Errorf("truncated %d, want %v", p.Truncated, wantCut)
	}
	if leaf := inode(t, dirs[len(dirs)-1]); p.Id != leaf {
		t.Errorf("path id %d, want the leaf directory's inode %d", p.Id, leaf)
	}
}

// checkLevels: leaf first, up to MEMCG_MAX_LEVELS, the hierarchy's root
// included; each level's id is its directory's inode and its max is the
// limit it was given, in pages.
func checkLevels(t *testing.T, seen *HelpersCurrentMemcg, dirs []string) {
	t.Helper()
	chain := append([]string{memoryV1}, dirs...) // root first
	wantN := min(len(chain), len(seen.Levels))
	if int(seen.NrLevels) != wantN {
		t.Fatalf("%d memcg levels, want %d", seen.NrLevels, wantN)
	}
	page := uint64(os.Getpagesize())
	for i := range wantN {
		dir := chain[len(chain)-1-i]
		l := seen.Levels[i]
		if id := inode(t, dir); l.CgroupId != id {
			t.Errorf("level %d (%s): cgroup id %d, want inode %d", i, dir, l.CgroupId, id)
		}
		if want := readUint(t, filepath.Join(dir, "memory.limit_in_bytes")) / page; l.MaxPages != want {
			t.Errorf("level %d (%s): max %d pages, want %d", i, dir, l.MaxPages, want)
		}
		if l.UsagePages > l.MaxPages {
			t.Errorf("level %d (%s): usage %d pages over max %d", i, dir, l.UsagePages, l.MaxPages)
		}
	}
}

// requireMemoryV1 skips unless the cgroup v1 memory controller is mounted.
func requireMemoryV1(t *testing.T) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(memoryV1, &fs); err != nil || fs.Type != unix.CGROUP_SUPER_MAGIC {
		t.Skipf("skipped: needs the cgroup v1 memory controller at %s", memoryV1)
	}
	if _, err := os.Stat(filepath.Join(memoryV1, "tasks")); err != nil {
		t.Skipf("skipped: needs the cgroup v1 memory controller at %s: %v", memoryV1, err)
	}
}

// makeCgroupChain makes depth nested memory cgroups below the hierarchy's
// root, each with its own small limit, and returns their paths, top first.
// They are removed when the test ends, leaf first.
func makeCgroupChain(t *testing.T, depth int) []string {
	t.Helper()
	parent := memoryV1
	var dirs []string
	for level := 1; level <= depth; level++ {
		name := fmt.Sprintf("l%d", level)
		if level == 1 {
			name = fmt.Sprintf("oomtrace-bpftest-%d", os.Getpid())
		}
		dir := filepath.Join(parent, name)
		parent = dir
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove cgroup: %v", err)
			}
		})
		limit := fmt.Sprint((64 + level) << 20)
		if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(limit), 0); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	return dirs
}

// enterCgroup moves the calling thread, locked to this goroutine, into the
// memory cgroup dir (v1: a TID written to tasks moves that thread alone),
// and back where it was when the test ends.
func enterCgroup(t *testing.T, dir string) {
	t.Helper()
	runtime.LockOSThread()
	tid := unix.Gettid()
	home := filepath.Join(memoryV1, threadMemoryCgroup(t))
	// Cleanups run on this goroutine, so on this thread, after the test.
	t.Cleanup(func() {
		if err := moveThread(home, tid); err != nil {
			t.Errorf("move thread back to %s: %v", home, err)
			return // stay locked: the thread dies with the goroutine
		}
		runtime.UnlockOSThread()
	})
	if err := moveThread(dir, tid); err != nil {
		t.Fatal(err)
	}
}

func moveThread(dir string, tid int) error {
	return os.WriteFile(filepath.Join(dir, "tasks"), []byte(strconv.Itoa(tid)), 0)
}

// threadMemoryCgroup is the calling thread's memory cgroup, relative to
// the hierarchy's root.
func threadMemoryCgroup(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/thread-self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			return parts[2]
		}
	}
	t.Fatal("no memory cgroup in /proc/thread-self/cgroup")
	return ""
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func readUint(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func cString(s []int8) string {
	b := make([]byte, 0, len(s))
	for _, c := range s {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// The kernel-side filter: a record passes when its pid is the one asked
// for and its memcg is the asked cgroup or below it; no filter passes all.
func TestFilterMatch(t *testing.T) {
	objs := load(t)
	requireMemoryV1(t)
	dirs := makeCgroupChain(t, 3) // top, l2, l3
	sibling := dirs[0] + "-other"
	if err := os.Mkdir(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sibling) })
	enterCgroup(t, dirs[1]) // the record's memcg: l2

	const pid = 4242
	for _, c := range []struct {
		name          string
		wantPID       uint64
		wantCgroupDir string
		pass          uint32
	}{
		{"no filter", 0, "", 1},
		{"its own cgroup", 0, dirs[1], 1},
		{"an ancestor", 0, dirs[0], 1},
		{"the hierarchy's root", 0, memoryV1, 1},
		{"a descendant", 0, dirs[2], 0},
		{"a sibling subtree", 0, sibling, 0},
		{"its pid", pid, "", 1},
		{"another pid", pid + 1, "", 0},
		{"its pid and subtree", pid, dirs[0], 1},
		{"its pid, another subtree", pid, sibling, 0},
		{"another pid, its subtree", pid + 1, dirs[0], 0},
	} {
		// Not a subtest: those run on another goroutine, so on a thread
		// outside the cgroup entered above.
		var cgroupID uint64
		if c.wantCgroupDir != "" {
			cgroupID = inode(t, c.wantCgroupDir)
		}
		if got := run(t, objs.MatchFilter, c.wantPID, cgroupID, pid); got != c.pass {
			t.Errorf("%s: filter pid %d cgroup %s: passed %d, want %d", c.name, c.wantPID, c.wantCgroupDir, got, c.pass)
		}
	}
}
