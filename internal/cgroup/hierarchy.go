// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3"
)

// Hierarchy is where the memory controller is mounted.
type Hierarchy struct {
	Version int    // 1 or 2
	Mount   string // e.g. /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2)
	// Mode is the host's cgroup layout: legacy, hybrid or unified.
	Mode string
	// Root is the part of the hierarchy the mount shows (mountinfo's root
	// field): "/" for all of it. In a container that does not mount the
	// host's /sys/fs/cgroup, the runtime's cgroup v1 mount shows only the
	// container's own cgroup, e.g. /kubepods/burstable/pod…/<id>.
	Root string
}

// Whole tells whether the mount shows the whole hierarchy, so the paths
// the kernel reports resolve under Mount. On cgroup v2 inside a cgroup
// namespace the root is shown relative to the namespace ("/" or "/.."
// upward) and cannot tell: it is taken as whole.
func (h Hierarchy) Whole() bool {
	return h.Version != 1 || h.Root == "/"
}

// ErrNoMemoryController means no mounted hierarchy has the memory controller.
var ErrNoMemoryController = errors.New("no cgroup hierarchy with the memory controller is mounted (want a cgroup v1 memory mount, or cgroup2 with memory in cgroup.controllers)")

// FindMemoryHierarchy reads /proc/self/mountinfo for the memory controller.
func FindMemoryHierarchy() (Hierarchy, error) {
	return findMemoryHierarchy("/proc/self/mountinfo")
}

func findMemoryHierarchy(mountinfo string) (Hierarchy, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("find memory cgroup hierarchy: %w", err)
	}
	defer f.Close()

	// A mount over another at the same path hides it, and mountinfo lists
	// mounts in the order they were made: the last memory mount is the one
	// a path under it reaches. In a container given the host's
	// /sys/fs/cgroup, that is the host's hierarchy, mounted over the
	// runtime's view of the container's own cgroup.
	h := Hierarchy{Mode: modeName(cgroups.Mode())}
	var v1, v2 *Hierarchy
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 >= len(fields) {
			continue
		}
		root, mount, fstype, superOpts := fields[3], fields[4], fields[sep+1], fields[sep+3]
		switch fstype {
		case "cgroup":
			for _, o := range strings.Split(superOpts, ",") {
				if o == "memory" && (v1 == nil || v1.Mount == mount) {
					v1 = &Hierarchy{Version: 1, Mount: mount, Mode: h.Mode, Root: root}
				}
			}
		case "cgroup2":
			if (v2 == nil || v2.Mount == mount) && hasController(mount, "memory") {
				v2 = &Hierarchy{Version: 2, Mount: mount, Mode: h.Mode, Root: root}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Hierarchy{}, fmt.Errorf("read %s: %w", mountinfo, err)
	}
	switch {
	case v1 != nil:
		return *v1, nil
	case v2 != nil:
		return *v2, nil
	}
	return h, ErrNoMemoryController
}

func hasController(mount, name string) bool {
	b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return false
	}
	for _, c := range strings.Fields(string(b)) {
		if c == name {
			return true
		}
	}
	return false
}

func modeName(m cgroups.CGMode) string {
	switch m {
	case cgroups.Legacy:
		return "legacy"
	case cgroups.Hybrid:
		return "hybrid"
	case cgroups.Unified:
		return "unified"
	}
	return "unavailable"
}

// OOMKillCounts walks the hierarchy and returns, for every memory cgroup
// that has had OOM kills, its kernfs id (the directory's inode number)
// and the count. The kernel counts kills per memcg; the BPF side compares
// against these to tell a kill from a victim that was already exiting.
func (h Hierarchy) OOMKillCounts() (map[uint64]uint64, error) {
	file := "memory.events.local"
	if h.Version == 1 {
		file = "memory.oom_control"
	}
	counts := map[uint64]uint64{}
	err := filepath.WalkDir(h.Mount, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		n, err := readKeyedCounter(filepath.Join(path, file), "oom_kill")
		if err != nil || n == 0 {
			return nil // the root has no such file on v2; gone cgroups have none
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			counts[st.Ino] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", h.Mount, err)
	}
	return counts, nil
}

// readKeyedCounter reads "key value" lines, as in memory.events and
// memory.oom_control, and returns the value of key.
func readKeyedCounter(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s %q is not a count", path, key, v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// Usage is a cgroup's memory usage.
type Usage struct {
	Path       string `json:"path"`
	UsageBytes uint64 `json:"usage_bytes"`
}

// TopUsage returns the n cgroups using most memory among those at most
// maxDepth below the root, largest first: for a global OOM, where the
// memory went. A parent and its children may both appear.
func (h Hierarchy) TopUsage(n, maxDepth int) []Usage {
	file := "memory.current"
	if h.Version == 1 {
		file = "memory.usage_in_bytes"
	}
	var all []Usage
	filepath.WalkDir(h.Mount, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(path, h.Mount)
		if rel == "" {
			return nil // the root: that is the whole node
		}
		if strings.Count(rel, "/") > maxDepth {
			return fs.SkipDir
		}
		b, err := os.ReadFile(filepath.Join(path, file))
		if err != nil {
			return nil
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			all = append(all, Usage{Path: rel, UsageBytes: v})
		}
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].UsageBytes > all[j].UsageBytes })
	return all[:min(n, len(all))]
}
