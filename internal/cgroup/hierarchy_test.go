// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeMountinfo(t *testing.T, lines string) string {
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A hybrid host like the development machine: v1 memory, v2 without it.
func TestFindMemoryHierarchyV1(t *testing.T) {
	mi := writeMountinfo(t, `25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
30 25 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
33 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
38 25 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`)
	h, err := findMemoryHierarchy(mi)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 1 || h.Mount != "/sys/fs/cgroup/memory" {
		t.Errorf("got v%d at %q, want v1 at /sys/fs/cgroup/memory", h.Version, h.Mount)
	}
}

// Inside a pod given the host's /sys/fs/cgroup (read-only, at the same
// path): the runtime first mounted the container's own memory cgroup
// there, then the host's hierarchy went over it. The host's is the one a
// path reaches, and it shows the whole hierarchy.
func TestFindMemoryHierarchyInContainer(t *testing.T) {
	own := "/oomtrace-e2e/kubepods/burstable/pod0b1c/4f2e"
	mi := writeMountinfo(t, `700 680 0:121 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
705 700 0:30 `+own+` /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:12 - cgroup cgroup rw,memory
720 680 0:23 / /sys/fs/cgroup ro,relatime - tmpfs tmpfs rw,mode=755
725 720 0:27 / /sys/fs/cgroup/cpu ro,relatime - cgroup cgroup rw,cpu
728 720 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`)
	h, err := findMemoryHierarchy(mi)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 1 || h.Mount != "/sys/fs/cgroup/memory" || h.Root != "/" || !h.Whole() {
		t.Errorf("got v%d at %q root %q (whole %v), want v1 at /sys/fs/cgroup/memory root / (whole)", h.Version, h.Mount, h.Root, h.Whole())
	}

	// Without the host's mount, only the container's own cgroup is seen.
	mi = writeMountinfo(t, `705 700 0:30 `+own+` /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
`)
	if h, err = findMemoryHierarchy(mi); err != nil {
		t.Fatal(err)
	}
	if h.Root != own || h.Whole() {
		t.Errorf("got root %q (whole %v), want %q, not whole", h.Root, h.Whole(), own)
	}
}

func TestFindMemoryHierarchyV2(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mi := writeMountinfo(t, "38 25 0:35 / "+root+" rw,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n")
	h, err := findMemoryHierarchy(mi)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Mount != root {
		t.Errorf("got v%d at %q, want v2 at %q", h.Version, h.Mount, root)
	}
}

func TestFindMemoryHierarchyNone(t *testing.T) {
	mi := writeMountinfo(t, "30 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\nmalformed line\n")
	if _, err := findMemoryHierarchy(mi); !errors.Is(err, ErrNoMemoryController) {
		t.Errorf("got %v, want ErrNoMemoryController", err)
	}
}

func TestReadKeyedCounter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "memory.oom_control")
	os.WriteFile(p, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"), 0o644)
	if n, err := readKeyedCounter(p, "oom_kill"); err != nil || n != 7 {
		t.Errorf("got %d, %v; want 7", n, err)
	}
	os.WriteFile(p, []byte("oom_kill x\n"), 0o644)
	if _, err := readKeyedCounter(p, "oom_kill"); err == nil {
		t.Error("a non-number was read as a count")
	}
}
