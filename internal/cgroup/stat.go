// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// MemoryStat is a memory cgroup's usage by kind, in bytes, hierarchical (the cgroup and all below it).
type MemoryStat struct {
	AnonBytes          uint64
	FileBytes          uint64 // page cache, without shmem
	ShmemBytes         uint64 // tmpfs, emptyDir medium Memory, /dev/shm, SysV shm
	KernelBytes        uint64 // slab, kernel stacks, page tables, sockets, percpu, vmalloc where exposed
	FileDirtyBytes     uint64
	FileWritebackBytes uint64
	UnevictableBytes   uint64
}

// ErrCgroupGone means the cgroup directory no longer exists: OOM kills
// often end the last task of a container, and the runtime then removes
// its cgroup before we get to read it.
var ErrCgroupGone = errors.New("cgroup directory no longer exists")

// v2KernelParts are the kernel-memory keys of a v2 memory.stat that lacks
// "kernel" (added in 5.18): Debian 11's 5.10, for one. vmalloc arrived
// with "kernel", so it is only listed in case a backport brings it alone.
var v2KernelParts = []string{"kernel_stack", "slab", "pagetables", "sock", "percpu", "vmalloc"}

// ReadMemoryStat reads the memory.stat of the cgroup at path, relative to
// the hierarchy's root and starting with "/", e.g.
// "/kubepods/burstable/pod<uid>". The error wraps ErrCgroupGone when the
// cgroup's directory is gone.
func (h Hierarchy) ReadMemoryStat(path string) (MemoryStat, error) {
	rel, err := cleanCgroupPath(path)
	if err != nil {
		return MemoryStat{}, err
	}
	switch h.Version {
	case 1:
		return h.readMemoryStatV1(rel)
	case 2:
		return h.readMemoryStatV2(rel)
	}
	return MemoryStat{}, fmt.Errorf("read memory.stat of %s: cgroup version %d is neither 1 nor 2", path, h.Version)
}

// readMemoryStatV1 and readMemoryStatV2 read memory.stat once and
// directly: it is read the moment an OOM is reported, while the victim's
// memory is being freed, so it is on the agent's latency path (a library
// that opened the cgroup first and read the file twice took ten times as
// long).
func (h Hierarchy) readMemoryStatV1(path string) (MemoryStat, error) {
	dir := filepath.Join(h.Mount, path)
	raw, err := readStatFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return MemoryStat{}, fmt.Errorf("read memory.stat of %s: %w", path, h.gone(dir, err))
	}
	if _, ok := raw["total_cache"]; !ok {
		// Zeros would look like an idle cgroup.
		return MemoryStat{}, fmt.Errorf("read memory.stat of %s: no total_cache key, not a cgroup v1 memory.stat", path)
	}
	// v1 "rss" is anonymous memory only; "cache" includes shmem. The
	// total_ keys are hierarchical (the cgroup and all below it).
	st := MemoryStat{
		AnonBytes:          raw["total_rss"],
		ShmemBytes:         raw["total_shmem"],
		FileBytes:          sub(raw["total_cache"], raw["total_shmem"]),
		FileDirtyBytes:     raw["total_dirty"],
		FileWritebackBytes: raw["total_writeback"],
		UnevictableBytes:   raw["total_unevictable"],
	}
	// v1 has no per-kind kernel stat, only the kmem counter, which covers
	// slab, stacks and page tables (not TCP buffers: kmem.tcp). Kernels
	// without kmem accounting lack the file, or fail to read it: 0 then.
	if n, err := readUintFile(filepath.Join(dir, "memory.kmem.usage_in_bytes")); err == nil {
		st.KernelBytes = n
	}
	return st, nil
}

func (h Hierarchy) readMemoryStatV2(path string) (MemoryStat, error) {
	dir := filepath.Join(h.Mount, path)
	raw, err := readStatFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return MemoryStat{}, fmt.Errorf("read memory.stat of %s: %w", path, h.gone(dir, err))
	}
	if _, ok := raw["anon"]; !ok {
		return MemoryStat{}, fmt.Errorf("read memory.stat of %s: no anon key, not a cgroup v2 memory.stat", path)
	}
	// v2 "file" includes shmem.
	st := MemoryStat{
		AnonBytes:          raw["anon"],
		ShmemBytes:         raw["shmem"],
		FileBytes:          sub(raw["file"], raw["shmem"]),
		FileDirtyBytes:     raw["file_dirty"],
		FileWritebackBytes: raw["file_writeback"],
		UnevictableBytes:   raw["unevictable"],
	}
	if n, ok := raw["kernel"]; ok {
		// "kernel" leaves socket buffers out; add them, so the number means
		// the same as the sum of parts on kernels before 5.18.
		st.KernelBytes = n + raw["sock"]
	} else {
		for _, k := range v2KernelParts {
			st.KernelBytes += raw[k]
		}
	}
	return st, nil
}

// Procs returns every pid in the cgroup at path and all its descendants,
// sorted and without duplicates (v1's cgroup.procs may repeat a pid). A
// descendant removed during the walk is skipped; the error wraps
// ErrCgroupGone when the cgroup at path itself is gone.
//
// The library's recursive Processes and Procs are not used: they give up
// the whole walk when any descendant disappears under them, which on a
// node with restarting containers is routine.
func (h Hierarchy) Procs(path string) ([]int, error) {
	rel, err := cleanCgroupPath(path)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(h.Mount, rel)
	if _, err := os.Lstat(root); err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", path, h.gone(root, err))
	}
	seen := map[int]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && vanished(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		pids, err := readPids(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if p != root && vanished(err) {
				return fs.SkipDir
			}
			return err
		}
		for _, pid := range pids {
			seen[pid] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", path, h.gone(root, err))
	}
	pids := make([]int, 0, len(seen))
	for pid := range seen {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids, nil
}

// cleanCgroupPath checks a cgroup path is rooted and cleans it; a rooted
// clean path cannot climb out of the mount.
func cleanCgroupPath(path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("cgroup path %q does not start with /", path)
	}
	return filepath.Clean(path), nil
}

// vanished reports whether err is what reading a removed cgroup gives:
// ENOENT when opening its files, ENODEV when it went between open and read.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// gone wraps ErrCgroupGone into err when err came from the cgroup at dir
// having been removed. A missing file in a directory that still exists
// (e.g. v2 without the memory controller enabled) or a missing mount is
// not a removed cgroup.
func (h Hierarchy) gone(dir string, err error) error {
	if !vanished(err) {
		return err
	}
	if !errors.Is(err, syscall.ENODEV) {
		if _, serr := os.Lstat(dir); !errors.Is(serr, fs.ErrNotExist) {
			return err
		}
	}
	if _, serr := os.Stat(h.Mount); serr != nil {
		return fmt.Errorf("memory hierarchy %s: %w", h.Mount, serr)
	}
	return fmt.Errorf("%w: %w", ErrCgroupGone, err)
}

// readStatFile reads a "key value" file such as memory.stat.
func readStatFile(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %q is not a count", path, k, v)
		}
		out[k] = n
	}
	return out, sc.Err()
}

func readUintFile(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a count", path, bytes.TrimSpace(b))
	}
	return n, nil
}

// readPids reads a cgroup.procs file.
func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a pid", path, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// sub is a-b, 0 if b is larger: the counters are read racily, and shmem
// can run ahead of the cache that includes it.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
