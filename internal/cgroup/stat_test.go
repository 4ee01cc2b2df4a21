// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// v1ContainerStat is a container's memory.stat from
// /work/shared/seeds/004 verbatim: a 1 GiB tmpfs emptyDir filled from
// inside the container, shmem counted in cache.
const v1ContainerStat = `cache 1066070016
rss 4190208
rss_huge 0
shmem 1048363008
mapped_file 4730880
dirty 135168
writeback 0
swap 0
workingset_refault_anon 0
workingset_refault_file 405504
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgpgin 267531
pgpgout 6185
pgfault 7293
pgmajfault 99
inactive_anon 528506880
active_anon 524181504
inactive_file 11718656
active_file 5677056
unevictable 0
hierarchical_memory_limit 1073741824
hierarchical_memsw_limit 1073741824
total_cache 1066070016
total_rss 4190208
total_rss_huge 0
total_shmem 1048363008
total_mapped_file 4730880
total_dirty 135168
total_writeback 0
total_swap 0
total_workingset_refault_anon 0
total_workingset_refault_file 405504
total_workingset_activate_anon 0
total_workingset_activate_file 0
total_workingset_restore_anon 0
total_workingset_restore_file 0
total_workingset_nodereclaim 0
total_pgpgin 267531
total_pgpgout 6185
total_pgfault 7293
total_pgmajfault 99
total_inactive_anon 528506880
total_active_anon 524181504
total_inactive_file 11718656
total_active_file 5677056
total_unevictable 0
`

// v1PodStat is the pod cgroup of the seed's 8 GiB shmem case. The
// total_cache, total_rss, total_rss_huge, total_shmem and
// total_inactive_file values are the seed's; the seed grepped only those,
// so the other keys are made up to agree with them. The local keys differ
// from the totals (the containers below hold the rss), which is what
// catches reading the wrong ones.
const v1PodStat = `cache 9069649920
rss 0
rss_huge 0
shmem 9069502464
mapped_file 0
dirty 0
writeback 0
swap 0
pgpgin 2214331
pgpgout 0
pgfault 2214419
pgmajfault 0
inactive_anon 9069502464
active_anon 0
inactive_file 147456
active_file 0
unevictable 0
hierarchical_memory_limit 17179869184
hierarchical_memsw_limit 17179869184
total_cache 9075990528
total_rss 6361980928
total_rss_huge 0
total_shmem 9069502464
total_mapped_file 1282048
total_dirty 270336
total_writeback 0
total_swap 0
total_pgpgin 43651712
total_pgpgout 40093185
total_pgfault 41228551
total_pgmajfault 7
total_inactive_anon 15431483392
total_active_anon 0
total_inactive_file 2592768
total_active_file 3895296
total_unevictable 0
`

// oomLogScope is the stats part of the seed's kernel line "Memory cgroup
// stats for .../kubepods-burstable-po*34a0838.scope:" at the OOM kill:
// cache and shmem equal, all of the cache was tmpfs.
const oomLogScope = `cache:8840436KB rss:388KB rss_huge:0KB shmem:8840436KB mapped_file:0KB dirty:0KB writeback:0KB swap:0KB workingset_refault_anon:0KB workingset_refault_file:0KB workingset_activate_anon:0KB workingset_activate_file:0KB workingset_restore_anon:0KB workingset_restore_file:0KB workingset_nodereclaim:0KB inactive_anon:4207500KB active_anon:4631220KB inactive_file:748KB active_file:0KB unevictable:0KB`

// v1StatFromOOMLog turns the kernel's "key:NKB" OOM dump into a leaf
// cgroup's memory.stat, where local and total_* agree.
func v1StatFromOOMLog(t *testing.T, line string) string {
	t.Helper()
	var local, total strings.Builder
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(v, "KB"), 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad OOM log field %q", f)
		}
		fmt.Fprintf(&local, "%s %d\n", k, kb*1024)
		fmt.Fprintf(&total, "total_%s %d\n", k, kb*1024)
	}
	return local.String() + total.String()
}

// v2Stat510 is memory.stat as Debian 11's 5.10 writes it: no "kernel",
// no "pagetables", no "vmalloc".
const v2Stat510 = `anon 104857600
file 545259520
kernel_stack 1966080
percpu 1234560
sock 36864
shmem 268435456
file_mapped 25165824
file_dirty 1216512
file_writeback 135168
anon_thp 41943040
file_thp 0
shmem_thp 0
inactive_anon 373293056
active_anon 0
inactive_file 201326592
active_file 75497472
unevictable 12288
slab_reclaimable 9437184
slab_unreclaimable 5242880
slab 14680064
workingset_refault_anon 0
workingset_refault_file 3158
workingset_activate_anon 0
workingset_activate_file 1023
workingset_restore_anon 0
workingset_restore_file 512
workingset_nodereclaim 0
pgfault 1532887
pgmajfault 301
pgrefill 10294
pgscan 20588
pgsteal 19876
pgactivate 7755
pgdeactivate 10294
pglazyfree 0
pglazyfreed 0
thp_fault_alloc 20
thp_collapse_alloc 0
`

// v2Stat61 is memory.stat as 6.1 writes it, with "kernel". Its parts
// deliberately do not add up to it, so the test sees which was used.
const v2Stat61 = `anon 2147483648
file 1073741824
kernel 62914560
kernel_stack 1654784
pagetables 9011200
sec_pagetables 0
percpu 3567616
sock 1228800
vmalloc 135168
shmem 805306368
zswap 0
zswapped 0
file_mapped 134217728
file_dirty 2453504
file_writeback 409600
swapcached 0
anon_thp 1048576000
file_thp 0
shmem_thp 0
inactive_anon 2952790016
active_anon 0
inactive_file 167772160
active_file 100663296
unevictable 2097152
slab_reclaimable 20971520
slab_unreclaimable 25165824
slab 46137344
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgfault 2860532
pgmajfault 12
pgrefill 0
pgactivate 0
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
thp_fault_alloc 500
thp_collapse_alloc 0
`

// v1OOMControl is what the library reads besides memory.stat.
const v1OOMControl = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"

// fakeCgroup makes mount/rel with the given files.
func fakeCgroup(t *testing.T, mount, rel string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadMemoryStatV1(t *testing.T) {
	const (
		pod       = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda9d684a4_53fe_4114_b8d0_8f138b933551.slice"
		container = pod + "/docker-e00a11510727.scope"
	)
	tests := []struct {
		name  string
		path  string
		files map[string]string
		want  MemoryStat
	}{{
		name: "container with a 1 GiB emptyDir",
		path: container,
		files: map[string]string{
			"memory.stat":        v1ContainerStat,
			"memory.oom_control": v1OOMControl,
			// Made up: the seed does not show this container's kmem.
			"memory.kmem.usage_in_bytes": "2162688\n",
		},
		want: MemoryStat{
			AnonBytes:          4190208,
			FileBytes:          1066070016 - 1048363008,
			ShmemBytes:         1048363008,
			KernelBytes:        2162688,
			FileDirtyBytes:     135168,
			FileWritebackBytes: 0,
			UnevictableBytes:   0,
		},
	}, {
		name: "pod holding 8 GiB of shmem from dead containers",
		path: pod,
		files: map[string]string{
			"memory.stat":        v1PodStat,
			"memory.oom_control": v1OOMControl,
			// The seed's OOM report: "kmem: usage 0kB".
			"memory.kmem.usage_in_bytes": "0\n",
		},
		want: MemoryStat{
			AnonBytes:        6361980928,
			FileBytes:        9075990528 - 9069502464,
			ShmemBytes:       9069502464,
			FileDirtyBytes:   270336,
			UnevictableBytes: 0,
		},
	}, {
		name: "scope from the OOM log, kernel without kmem files",
		path: pod + "/docker-24ec5b44.scope",
		files: map[string]string{
			"memory.stat":        v1StatFromOOMLog(t, oomLogScope),
			"memory.oom_control": v1OOMControl,
		},
		want: MemoryStat{
			AnonBytes:  388 * 1024,
			FileBytes:  0,
			ShmemBytes: 8840436 * 1024,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount := filepath.Join(t.TempDir(), "memory")
			fakeCgroup(t, mount, tt.path, tt.files)
			h := Hierarchy{Version: 1, Mount: mount, Mode: "legacy"}
			got, err := h.ReadMemoryStat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ReadMemoryStat(%s)\n got  %+v\n want %+v", tt.path, got, tt.want)
			}
		})
	}
}

// TestReadMemoryStatV1MountName: the library wants the v1 mount to end in
// "memory"; co-mounted hierarchies do not.
func TestReadMemoryStatV1MountName(t *testing.T) {
	mount := filepath.Join(t.TempDir(), "cpu,memory")
	fakeCgroup(t, mount, "/a", map[string]string{
		"memory.stat":        v1ContainerStat,
		"memory.oom_control": v1OOMControl,
	})
	got, err := Hierarchy{Version: 1, Mount: mount}.ReadMemoryStat("/a")
	if err != nil {
		t.Fatal(err)
	}
	if got.ShmemBytes != 1048363008 || got.AnonBytes != 4190208 {
		t.Errorf("got %+v", got)
	}
}

func TestReadMemoryStatV2(t *testing.T) {
	const path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f5c7b5e_2a8f_4b8e_9d1c_3f9a1c2b7e41.slice"
	tests := []struct {
		name string
		stat string
		want MemoryStat
	}{{
		name: "5.10 without kernel",
		stat: v2Stat510,
		want: MemoryStat{
			AnonBytes:  104857600,
			FileBytes:  545259520 - 268435456,
			ShmemBytes: 268435456,
			// kernel_stack + slab + sock + percpu; no pagetables or vmalloc.
			KernelBytes:        1966080 + 14680064 + 36864 + 1234560,
			FileDirtyBytes:     1216512,
			FileWritebackBytes: 135168,
			UnevictableBytes:   12288,
		},
	}, {
		name: "6.1 with kernel",
		stat: v2Stat61,
		want: MemoryStat{
			AnonBytes:          2147483648,
			FileBytes:          1073741824 - 805306368,
			ShmemBytes:         805306368,
			KernelBytes:        62914560 + 1228800, // kernel + sock
			FileDirtyBytes:     2453504,
			FileWritebackBytes: 409600,
			UnevictableBytes:   2097152,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount := t.TempDir()
			fakeCgroup(t, mount, path, map[string]string{
				"memory.stat":    tt.stat,
				"memory.current": "3221225472\n",
				"memory.max":     "max\n",
			})
			h := Hierarchy{Version: 2, Mount: mount, Mode: "unified"}
			got, err := h.ReadMemoryStat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ReadMemoryStat(%s)\n got  %+v\n want %+v", path, got, tt.want)
			}
		})
	}
}

func TestReadMemoryStatGone(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			mount := t.TempDir()
			fakeCgroup(t, mount, "/kubepods", map[string]string{
				"memory.stat":        v1ContainerStat,
				"memory.oom_control": v1OOMControl,
			})
			h := Hierarchy{Version: version, Mount: mount}

			_, err := h.ReadMemoryStat("/kubepods/pod-gone")
			if !errors.Is(err, ErrCgroupGone) {
				t.Fatalf("missing cgroup: got %v, want ErrCgroupGone", err)
			}
			if !strings.Contains(err.Error(), "/kubepods/pod-gone") {
				t.Errorf("error %q does not name the path", err)
			}
			if _, err := h.Procs("/kubepods/pod-gone"); !errors.Is(err, ErrCgroupGone) {
				t.Errorf("Procs of missing cgroup: got %v, want ErrCgroupGone", err)
			}

			// A directory without memory.stat (v2 with the controller not
			// enabled there) has not gone.
			fakeCgroup(t, mount, "/nomem", nil)
			if _, err := h.ReadMemoryStat("/nomem"); err == nil || errors.Is(err, ErrCgroupGone) {
				t.Errorf("cgroup without memory.stat: got %v, want an error other than ErrCgroupGone", err)
			}

			// Nor is a missing mount a removed cgroup.
			bad := Hierarchy{Version: version, Mount: filepath.Join(mount, "not-mounted")}
			_, err = bad.ReadMemoryStat("/kubepods")
			if err == nil || errors.Is(err, ErrCgroupGone) || !strings.Contains(err.Error(), "not-mounted") {
				t.Errorf("missing mount: got %v, want an error naming the mount, not ErrCgroupGone", err)
			}
		})
	}
}

func TestReadMemoryStatErrors(t *testing.T) {
	mount := t.TempDir()
	fakeCgroup(t, mount, "/bad", map[string]string{
		"memory.stat":        "anon 12\nfile twelve\n",
		"memory.oom_control": v1OOMControl,
	})
	fakeCgroup(t, mount, "/v1file", map[string]string{
		"memory.stat":        v1ContainerStat,
		"memory.oom_control": v1OOMControl,
	})
	fakeCgroup(t, mount, "/v2file", map[string]string{
		"memory.stat":        v2Stat61,
		"memory.oom_control": v1OOMControl,
	})
	tests := []struct {
		name    string
		h       Hierarchy
		path    string
		wantMsg string
	}{
		{"relative path", Hierarchy{Version: 2, Mount: mount}, "bad", "does not start with /"},
		{"unknown version", Hierarchy{Version: 3, Mount: mount}, "/bad", "neither 1 nor 2"},
		{"unparsable v1", Hierarchy{Version: 1, Mount: mount}, "/bad", "read memory.stat of /bad"},
		{"unparsable v2", Hierarchy{Version: 2, Mount: mount}, "/bad", "read memory.stat of /bad"},
		{"v2 file read as v1", Hierarchy{Version: 1, Mount: mount}, "/v2file", "no total_cache"},
		{"v1 file read as v2", Hierarchy{Version: 2, Mount: mount}, "/v1file", "no anon key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.h.ReadMemoryStat(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantMsg)
			}
			if errors.Is(err, ErrCgroupGone) {
				t.Errorf("%v should not be ErrCgroupGone", err)
			}
		})
	}
}

func TestProcs(t *testing.T) {
	mount := t.TempDir()
	pod := "/kubepods/burstable/pod0f5c7b5e-2a8f-4b8e-9d1c-3f9a1c2b7e41"
	fakeCgroup(t, mount, pod, map[string]string{"cgroup.procs": ""})
	// v1's cgroup.procs may list a pid twice.
	fakeCgroup(t, mount, pod+"/pause", map[string]string{"cgroup.procs": "1201\n"})
	fakeCgroup(t, mount, pod+"/app", map[string]string{"cgroup.procs": "1300\n1302\n1300\n"})
	fakeCgroup(t, mount, pod+"/app/nested", map[string]string{"cgroup.procs": "1310\n1302\n"})
	// A cgroup whose files went while the walk was at it.
	fakeCgroup(t, mount, pod+"/exited", nil)
	// Not below the pod.
	fakeCgroup(t, mount, "/kubepods/burstable/other", map[string]string{"cgroup.procs": "99\n"})

	for _, version := range []int{1, 2} {
		h := Hierarchy{Version: version, Mount: mount}
		got, err := h.Procs(pod)
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{1201, 1300, 1302, 1310}; !slices.Equal(got, want) {
			t.Errorf("v%d Procs(%s) = %v, want %v", version, pod, got, want)
		}
	}

	fakeCgroup(t, mount, "/garbled", map[string]string{"cgroup.procs": "12\nx\n"})
	if _, err := (Hierarchy{Version: 1, Mount: mount}).Procs("/garbled"); err == nil || errors.Is(err, ErrCgroupGone) {
		t.Errorf("garbled cgroup.procs: got %v, want an error other than ErrCgroupGone", err)
	}
}

// TestReadMemoryStatLive puts a shell that fills 8 MiB of its own tmpfs
// into a fresh memory cgroup, limited to 64 MiB so nothing here can
// press on the host, and reads the cgroup's parent: shmem must show up
// there, hierarchically, and not as file or anon.
func TestReadMemoryStatLive(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped: -short: makes a memory cgroup and a tmpfs on this machine (make test runs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("live cgroup test needs root (mkdir in the memory hierarchy, mount tmpfs)")
	}
	h, err := FindMemoryHierarchy()
	if err != nil {
		t.Skipf("live cgroup test needs a memory cgroup hierarchy: %v", err)
	}
	if h.Version == 2 && !hasController(h.Mount, "memory") {
		t.Skipf("live cgroup test: memory controller not enabled at %s", h.Mount)
	}
	for _, tool := range []string{"sh", "dd", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("live cgroup test needs %s: %v", tool, err)
		}
	}

	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	const fill = 8 << 20
	rel := "/oomtrace-stattest-" + hex.EncodeToString(suffix[:])
	outer := filepath.Join(h.Mount, rel)
	inner := filepath.Join(outer, "inner")
	tmpfs := t.TempDir()

	// Cleanup runs in the reverse order of these steps, and is also called
	// directly to check reads of the removed cgroup.
	var (
		once    sync.Once
		child   *exec.Cmd
		mounted bool
	)
	cleanup := func() {
		once.Do(func() {
			if child != nil && child.Process != nil {
				child.Process.Kill()
				child.Wait()
			}
			if mounted {
				if err := syscall.Unmount(tmpfs, 0); err != nil {
					t.Errorf("unmount %s: %v", tmpfs, err)
					syscall.Unmount(tmpfs, syscall.MNT_DETACH)
				}
			}
			for _, dir := range []string{inner, outer} {
				if err := rmdirRetry(dir); err != nil {
					t.Errorf("remove test cgroup: %v", err)
				}
			}
		})
	}
	t.Cleanup(cleanup)

	if err := os.Mkdir(outer, 0o755); err != nil {
		t.Fatalf("make test cgroup: %v", err)
	}
	limitFile, limit := "memory.limit_in_bytes", "67108864"
	if h.Version == 2 {
		limitFile = "memory.max"
		if err := os.WriteFile(filepath.Join(outer, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			t.Fatalf("enable memory controller below %s: %v", outer, err)
		}
	}
	if err := os.WriteFile(filepath.Join(outer, limitFile), []byte(limit), 0); err != nil {
		t.Fatalf("limit test cgroup: %v", err)
	}
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatalf("make test cgroup: %v", err)
	}
	if err := syscall.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", tmpfs, err)
	}
	mounted = true

	// The shell moves itself into the cgroup before dd runs, so dd's
	// tmpfs pages are charged there; it then stays as sleep.
	child = exec.Command("sh", "-c",
		`echo $$ > "$1/cgroup.procs" && dd if=/dev/zero of="$2/fill" bs=1M count=8 2>/dev/null && echo ready && exec sleep 30`,
		"sh", inner, tmpfs)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("child did not fill the tmpfs (got %q)", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("child did not fill the tmpfs within 20s")
	}

	st, err := h.ReadMemoryStat(rel)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("v%d %s after writing %d bytes to tmpfs: %+v", h.Version, rel, fill, st)
	if st.ShmemBytes < fill {
		t.Errorf("shmem_bytes = %d, want >= %d", st.ShmemBytes, fill)
	}
	// Counted as page cache or anon, the tmpfs file would show here.
	if st.FileBytes >= fill {
		t.Errorf("file_bytes = %d, want < %d: shmem not taken out of the page cache", st.FileBytes, fill)
	}
	if st.AnonBytes >= fill {
		t.Errorf("anon_bytes = %d, want < %d for a shell and sleep", st.AnonBytes, fill)
	}

	pids, err := h.Procs(rel)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Procs(%s) = %v, child pid %d", rel, pids, child.Process.Pid)
	if !slices.Equal(pids, []int{child.Process.Pid}) {
		t.Errorf("Procs(%s) = %v, want [%d]", rel, pids, child.Process.Pid)
	}

	cleanup()
	_, err = h.ReadMemoryStat(rel)
	if !errors.Is(err, ErrCgroupGone) {
		t.Errorf("ReadMemoryStat of removed cgroup: got %v, want ErrCgroupGone", err)
	}
	t.Logf("removed cgroup: %v", err)
	if _, err := h.Procs(rel); !errors.Is(err, ErrCgroupGone) {
		t.Errorf("Procs of removed cgroup: got %v, want ErrCgroupGone", err)
	}
}

// rmdirRetry removes a cgroup directory; the kernel refuses with EBUSY
// for a moment after its last task exits.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

// FuzzReadMemoryStat: whatever a memory.stat holds (v1 or v2), reading
// it gives numbers or an error naming the cgroup, never a panic, and the
// page cache without shmem never wraps below zero.
func FuzzReadMemoryStat(f *testing.F) {
	for _, s := range []string{v1ContainerStat, v1PodStat} {
		f.Add(s, uint8(1))
	}
	for _, s := range []string{v2Stat510, v2Stat61} {
		f.Add(s, uint8(2))
	}
	f.Add("total_cache 1\ntotal_shmem 2\n", uint8(1))
	f.Add("anon 1\nfile 1\nshmem 18446744073709551615\nkernel x\n", uint8(2))
	f.Fuzz(func(t *testing.T, stat string, version uint8) {
		const path = "/kubepods/pod1"
		v := 1 + int(version%2)
		mount := filepath.Join(t.TempDir(), "memory")
		files := map[string]string{"memory.stat": stat, "memory.oom_control": v1OOMControl}
		if v == 2 {
			files = map[string]string{"memory.stat": stat, "memory.current": "1\n", "memory.max": "max\n"}
		}
		fakeCgroup(t, mount, path, files)
		st, err := Hierarchy{Version: v, Mount: mount}.ReadMemoryStat(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("v%d error does not name the cgroup: %v", v, err)
			}
			return
		}
		// file is cache - shmem, or 0: the two add up to the cache,
		// which a wrapped difference would overflow.
		if st.FileBytes+st.ShmemBytes < st.ShmemBytes {
			t.Fatalf("v%d: file bytes wrapped: %+v", v, st)
		}
	})
}
