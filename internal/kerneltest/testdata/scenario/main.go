// SPDX-License-Identifier: Apache-2.0

// Command scenario runs inside the test VMs: it makes the memory pressure
// a scenario needs, from inside a given cgroup.
//
//	scenario hog  -cgroup DIR -mib N [-hold] [-adj N]   map and touch N MiB
//	scenario fill -cgroup DIR -mib N -file F [-adj N]   write N MiB to a tmpfs file
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: scenario hog|fill [flags]")
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
	if os.Args[1] == "fill" {
		fill(*cgroup, *file, *mib)
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
