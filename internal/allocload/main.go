// SPDX-License-Identifier: Apache-2.0

// Command allocload is the allocation-heavy workload of the overhead
// benchmarks: it makes the kernel allocate and free pages as fast as it
// can, one kind at a time, and prints what that cost it.
//
//	allocload fault -mib N              map, touch and unmap N MiB of anonymous memory
//	allocload pagecache -mib N -dir D   write N MiB into a file in D, truncating it every 16 MiB
//	allocload pipe -mib N               send N MiB through a pipe and back, 64 KiB at a time
//
// With -fifo it runs under SCHED_FIFO, so other processes on a shared
// machine cannot preempt it (the kernel still keeps 5 % of each second
// for them: sched_rt_runtime_us), on one CPU (the last it may use), so
// the pipe's two threads hand over on one CPU as they would without
// real-time scheduling, not through another CPU's wake-up. Each prints
// one line, "<mode> cpu_us=<user+system CPU time> wall_us=<elapsed>", of
// the workload alone (not the program's start), and exits 0. Tests build
// it static (vmtest.BuildStatic), so it runs in the VMs' initramfs too.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	n := fs.Int("mib", 256, "MiB to allocate in all")
	dir := fs.String("dir", os.TempDir(), "pagecache: directory of the file")
	fifo := fs.Bool("fifo", false, "run under SCHED_FIFO")
	fs.Parse(os.Args[2:])
	if *fifo && os.Getenv(fifoEnv) == "" {
		reexecFIFO()
	}

	cpuStart, err := cpuTime()
	if err != nil {
		fmt.Fprintf(os.Stderr, "allocload: getrusage: %v\n", err)
		os.Exit(1)
	}
	start := time.Now()
	switch mode {
	case "fault":
		err = fault(*n)
	case "pagecache":
		err = pageCache(*n, *dir)
	case "pipe":
		err = pipePingPong(*n)
	default:
		usage()
	}
	wall := time.Since(start)
	if err != nil {
		fmt.Fprintf(os.Stderr, "allocload %s: %v\n", mode, err)
		os.Exit(1)
	}
	cpuEnd, err := cpuTime()
	if err != nil {
		fmt.Fprintf(os.Stderr, "allocload: getrusage: %v\n", err)
		os.Exit(1)
	}
	cpu := cpuEnd - cpuStart
	fmt.Printf("%s cpu_us=%d wall_us=%d\n", mode, cpu.Microseconds(), wall.Microseconds())
}

// cpuTime is the user and system CPU time of every thread so far.
func cpuTime() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// fifoEnv marks the process reexecFIFO started.
const fifoEnv = "ALLOCLOAD_FIFO"

// reexecFIFO runs this program again under SCHED_FIFO on one CPU. Policy
// and affinity are a thread's: set on this one, execve keeps them for
// the new program's first thread, and every thread it starts inherits
// them.
func reexecFIFO() {
	runtime.LockOSThread()
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		fmt.Fprintf(os.Stderr, "allocload: CPU affinity: %v\n", err)
		os.Exit(1)
	}
	last := 0
	for c := 0; c < len(cpus)*64; c++ {
		if cpus.IsSet(c) {
			last = c
		}
	}
	cpus.Zero()
	cpus.Set(last)
	if err := unix.SchedSetaffinity(0, &cpus); err != nil {
		fmt.Fprintf(os.Stderr, "allocload: CPU affinity: %v\n", err)
		os.Exit(1)
	}
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}, 0); err != nil {
		fmt.Fprintf(os.Stderr, "allocload: SCHED_FIFO: %v\n", err)
		os.Exit(1)
	}
	self, err := os.Executable()
	if err == nil {
		err = unix.Exec(self, os.Args, append(os.Environ(), fifoEnv+"=1"))
	}
	fmt.Fprintf(os.Stderr, "allocload: run again under SCHED_FIFO: %v\n", err)
	os.Exit(1)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: allocload fault|pagecache|pipe [-mib N] [-dir D] [-fifo]")
	os.Exit(2)
}

// fault maps, touches and unmaps a MiB at a time: a page allocation
// (and free) per page.
func fault(n int) error {
	page := os.Getpagesize()
	for i := 0; i < n; i++ {
		mem, err := unix.Mmap(-1, 0, mib, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			return err
		}
		for off := 0; off < len(mem); off += page {
			mem[off] = 1
		}
		if err := unix.Munmap(mem); err != nil {
			return err
		}
	}
	return nil
}

// pageCache writes into a file and truncates it before writeback can
// start: page cache pages allocated and freed, little disk I/O.
func pageCache(n int, dir string) error {
	f, err := os.CreateTemp(dir, "allocload-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < n; i++ {
		if i%16 == 0 {
			if err := f.Truncate(0); err != nil {
				return err
			}
			if _, err := f.Seek(0, 0); err != nil {
				return err
			}
		}
		for off := 0; off < mib; off += len(buf) {
			if _, err := f.Write(buf); err != nil {
				return err
			}
		}
	}
	return f.Truncate(0)
}

// pipeMessage fills a pipe of the default size (16 pages). A pipe keeps
// one freed page for its next write: a message of one page would be
// written into that page every time, allocating none.
const pipeMessage = 64 << 10

// pipePingPong sends 64 KiB through one pipe and back through another,
// n MiB each way, on two threads: every write into an empty pipe slot
// allocates a page, every read frees it.
func pipePingPong(n int) error {
	var there, back [2]int
	if err := unix.Pipe2(there[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	if err := unix.Pipe2(back[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	count := n * mib / pipeMessage
	echo := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		echo <- relay(back[1], there[0], make([]byte, pipeMessage), count, false)
	}()
	runtime.LockOSThread()
	err := relay(there[1], back[0], make([]byte, pipeMessage), count, true)
	for _, fd := range append(there[:], back[:]...) {
		unix.Close(fd)
	}
	return errors.Join(err, <-echo)
}

// relay moves count pages: written to out, then read from in (first
// true), or read from in, then written to out.
func relay(out, in int, buf []byte, count int, first bool) error {
	for i := 0; i < count; i++ {
		if first {
			if err := writeFull(out, buf); err != nil {
				return err
			}
		}
		if err := readFull(in, buf); err != nil {
			return err
		}
		if !first {
			if err := writeFull(out, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("pipe closed")
		}
		b = b[n:]
	}
	return nil
}
