// SPDX-License-Identifier: Apache-2.0

// Command scenario runs inside the test VMs: it makes the memory pressure
// a scenario needs, from inside a given cgroup.
//
//	scenario hog  -cgroup DIR -mib N [-hold] [-adj N]   map and touch N MiB
//	scenario fill -cgroup DIR -mib N -file F [-adj N]   write N MiB to a tmpfs file
//	scenario fragment -mib N                           fragment N MiB of memory and hold it
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: scenario hog|fill|fragment [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	cgroup := fs.String("cgroup", "", "cgroup directory to join first")
	mib := fs.Int("mib", 0, "MiB to allocate")
	hold := fs.Bool("hold", false, "hog: print ready and keep the memory until killed")
	adj := fs.Int("adj", 0, "oom_score_adj to set first")
	file := fs.String("file", "", "fill: file on a tmpfs to write")
	fs.Parse(os.Args[2:])

	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*adj)), 0); err != nil {
		fail(3, "set oom_score_adj: %v", err)
	}
	switch os.Args[1] {
	case "fill":
		fill(*cgroup, *file, *mib)
	case "fragment":
		fragment(*mib)
	}
	if *cgroup != "" {
		if err := os.WriteFile(filepath.Join(*cgroup, "cgroup.procs"), []byte("0"), 0); err != nil {
			fail(3, "join %s: %v", *cgroup, err)
		}
	}
	switch os.Args[1] {
	case "hog":
		mem, err := unix.Mmap(-1, 0, *mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE) // past the overcommit heuristic
		if err != nil {
			fail(4, "mmap: %v", err)
		}
		for i := 0; i < len(mem); i += os.Getpagesize() {
			mem[i] = 1
		}
		fmt.Println("ready")
		for *hold {
			unix.Pause()
		}
	default:
		fail(2, "unknown scenario %q", os.Args[1])
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scenario: "+format+"\n", args...)
	os.Exit(code)
}

// fill writes mib MiB to a tmpfs file from inside cgroup, where no task
// can be killed: the memcg OOM fails and write returns ENOMEM. Everything
// the process needs is faulted in and locked before it joins the cgroup,
// because a page fault that cannot be charged there is retried forever.
func fill(cgroup, file string, mib int) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 1
	}
	debug.SetGCPercent(-1)
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		fail(4, "mlockall: %v", err)
	}
	fd, err := unix.Open(file, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o600)
	if err != nil {
		fail(4, "create %s: %v", file, err)
	}
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte("0"), 0); err != nil {
		fail(3, "join %s: %v", cgroup, err)
	}
	for i := 0; i < mib; i++ {
		if _, err := unix.Write(fd, buf); err != nil {
			if err == unix.ENOMEM || err == unix.ENOSPC {
				// Say nothing: printing would be a charge in this cgroup too.
				os.Exit(0)
			}
			fail(5, "write: %v", err)
		}
	}
	fail(6, "wrote %d MiB without running out", mib)
}

// fragment leaves free memory in single pages: it touches mib MiB, gives
// back every other page, and locks the rest where it is (with
// vm.compact_unevictable_allowed=0, compaction cannot move locked pages).
// Then it holds until killed.
func fragment(mib int) {
	if mib == 0 {
		// As much as the VM can give without an OOM: MemAvailable less 32 MiB.
		mib = memAvailableMiB() - 32
	}
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		fail(4, "mmap: %v", err)
	}
	// No transparent huge pages: they would be freed whole.
	unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	for i := page; i < len(mem); i += 2 * page {
		if err := unix.Madvise(mem[i:i+page], unix.MADV_DONTNEED); err != nil {
			fail(4, "madvise: %v", err)
		}
	}
	const mlockOnFault = 1 // MLOCK_ONFAULT: lock the pages present, fault no others in
	if _, _, errno := unix.Syscall(unix.SYS_MLOCK2, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), mlockOnFault); errno != 0 {
		fail(4, "mlock2: %v", errno)
	}
	fmt.Println("ready")
	for {
		unix.Pause()
	}
}

func memAvailableMiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		fail(4, "read meminfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb >> 10
		}
	}
	fail(4, "no MemAvailable in /proc/meminfo")
	return 0
}
