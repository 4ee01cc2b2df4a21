// SPDX-License-Identifier: Apache-2.0

// Command memhog makes the memory pressure the tests need, from inside a
// given cgroup: the live tests on this machine, the VM harness's own test
// and the kernel matrix all run it. Tests build it static (CGO_ENABLED=0,
// see vmtest.BuildStatic), so it runs in the VMs' initramfs as well.
//
//	memhog hog -mib N [flags]                  map and touch N MiB, print "ready"
//	memhog fill -cgroup DIR -mib N -file F     write N MiB to a tmpfs file
//	memhog fragment [-mib N]                   fragment N MiB of memory and hold it
//
// Every subcommand first sets its oom_score_adj to -adj, if given (the VM
// scenarios' shell runs at -1000, so they pass -adj 0; a container's
// process keeps the value its runtime gave it, which it may not lower),
// and joins -cgroup DIR, if given. hog's
// other flags, in the order they act:
//
//	-init               run the rest as a child and exit as it did (pid 1 of
//	                    a new pid namespace, a container's init)
//	-respawn            with -init: run the child again each time it exits,
//	                    and never exit (a container whose init outlives its
//	                    OOM-killed children)
//	-respawn-max N      with -respawn: run N children, then stay without
//	                    any (a storm of exactly N kills)
//	-private-tmpfs DIR  mount a 256 MiB tmpfs on DIR (started in a mount
//	                    namespace of its own: the mount is kept private)
//	-sleeper            leave a small process in the cgroup that holds on
//	-write FILE -write-mib N   write N MiB to FILE, a MiB at a time
//	-bind-node N        set_mempolicy(MPOL_BIND) to NUMA node N
//	-pre-mib N          map and touch N MiB before anything below (a
//	                    process that already holds its memory)
//	-on-signal          print "waiting", touch only after a SIGUSR1 (an
//	                    OOM at the moment a test chooses)
//	-paced              touch a MiB every 5 ms
//	-progress           print "memhog: touched N MiB" every 8 MiB
//	-hold               keep the memory until killed
//
// Without -hold, hog exits 0 once it has touched everything, so a missing
// OOM shows up as a failed check, not as a hang.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exit codes, so a test can tell a setup failure from an OOM kill (137).
const (
	exitUsage = 2
	exitSetup = 3
	exitMem   = 4
	exitWrite = 5 // fill: a write failed other than for lack of memory
	exitNoOOM = 6 // fill: everything was written
)

type hogFlags struct {
	cgroup       string
	adj          int
	setAdj       bool // -adj was given
	mib          int
	preMiB       int
	hold, paced  bool
	progress     bool
	init         bool
	respawn      bool
	respawnMax   int
	onSignal     bool
	privateTmpfs string
	sleeper      bool
	write        string
	writeMiB     int
	bindNode     int
	file         string
}

func main() {
	if len(os.Args) < 2 {
		fail(exitUsage, "usage: memhog hog|fill|fragment [flags]")
	}
	cmd := os.Args[1]
	var f hogFlags
	fs := flag.NewFlagSet("memhog "+cmd, flag.ExitOnError)
	fs.StringVar(&f.cgroup, "cgroup", "", "cgroup directory to join first")
	fs.IntVar(&f.adj, "adj", 0, "oom_score_adj to set first (not given: left as it is)")
	fs.IntVar(&f.mib, "mib", 0, "MiB to allocate (fragment: 0 is all it can without an OOM)")
	fs.IntVar(&f.preMiB, "pre-mib", 0, "hog: MiB to allocate first, before -on-signal waits")
	fs.BoolVar(&f.hold, "hold", false, "hog: print ready and keep the memory until killed")
	fs.BoolVar(&f.paced, "paced", false, "hog: touch a MiB every 5 ms, so a victim killed meanwhile has time to free its memory")
	fs.BoolVar(&f.progress, "progress", false, "hog: print progress every 8 MiB")
	fs.BoolVar(&f.init, "init", false, "hog: run the hog as a child and exit as it did")
	fs.BoolVar(&f.respawn, "respawn", false, "hog: with -init, run the child again each time it exits, and never exit")
	fs.IntVar(&f.respawnMax, "respawn-max", 0, "hog: with -respawn, run this many children, then no more (0: no end)")
	fs.BoolVar(&f.onSignal, "on-signal", false, "hog: touch the memory only after a SIGUSR1")
	fs.StringVar(&f.privateTmpfs, "private-tmpfs", "", "hog: mount a tmpfs here, private to this mount namespace")
	fs.BoolVar(&f.sleeper, "sleeper", false, "hog: leave a small process in the cgroup that outlives the hog")
	fs.StringVar(&f.write, "write", "", "hog: write -write-mib MiB to this file first")
	fs.IntVar(&f.writeMiB, "write-mib", 0, "hog: MiB for -write")
	fs.IntVar(&f.bindNode, "bind-node", -1, "hog: allocate only on this NUMA node (set_mempolicy MPOL_BIND)")
	fs.StringVar(&f.file, "file", "", "fill: file on a tmpfs to write")
	fs.Parse(os.Args[2:])

	fs.Visit(func(given *flag.Flag) { f.setAdj = f.setAdj || given.Name == "adj" })
	if f.setAdj {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(f.adj)), 0); err != nil {
			fail(exitSetup, "set oom_score_adj: %v", err)
		}
	}
	switch cmd {
	case "hog":
		joinCgroup(f.cgroup)
		hog(f)
	case "fill":
		fill(f.cgroup, f.file, f.mib) // joins the cgroup itself, when ready
	case "fragment":
		joinCgroup(f.cgroup)
		fragment(f.mib)
	default:
		fail(exitUsage, "unknown subcommand %q: want hog, fill or fragment", cmd)
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "memhog: "+format+"\n", args...)
	os.Exit(code)
}

func joinCgroup(dir string) {
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
		fail(exitSetup, "join cgroup %s: %v", dir, err)
	}
}

func hog(f hogFlags) {
	if f.init {
		args := slices.DeleteFunc(slices.Clone(os.Args[1:]), func(a string) bool {
			return slices.Contains([]string{"-init", "--init", "-respawn", "--respawn"}, a)
		})
		if !f.respawn {
			os.Exit(runChild(args))
		}
		// A SIGUSR1 meant for the child, sent to every process of the
		// container, must not end the init. Handled, not ignored: the
		// child starts with the default action, as exec resets handlers.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGUSR1)
		for n := 1; f.respawnMax == 0 || n <= f.respawnMax; n++ {
			fmt.Printf("memhog: child exited %d\n", runChild(args))
			time.Sleep(20 * time.Millisecond) // no busy loop if the child fails at once
		}
		fmt.Printf("memhog: %d children run\n", f.respawnMax)
		for {
			time.Sleep(time.Hour)
		}
	}
	if f.privateTmpfs != "" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fail(exitSetup, "make mounts private: %v", err)
		}
		if err := unix.Mount("tmpfs", f.privateTmpfs, "tmpfs", 0, "size=256m"); err != nil {
			fail(exitSetup, "mount tmpfs on %s: %v", f.privateTmpfs, err)
		}
	}
	if f.sleeper {
		// A second process of the container that outlives the hog, so
		// the container's mounts can still be looked at after the kill.
		args := []string{"hog", "-hold"}
		if f.setAdj {
			args = append(args, "-adj", strconv.Itoa(f.adj))
		}
		if f.cgroup != "" {
			args = append(args, "-cgroup", f.cgroup)
		}
		if err := exec.Command("/proc/self/exe", args...).Start(); err != nil {
			fail(exitSetup, "start sleeper: %v", err)
		}
	}
	if f.write != "" {
		if err := writeMiB(f.write, f.writeMiB); err != nil {
			fail(exitSetup, "write %s: %v", f.write, err)
		}
	}
	if f.bindNode >= 0 {
		bindNode(f.bindNode)
	}
	if f.preMiB > 0 {
		touch(f.preMiB, false, false)
	}
	if f.onSignal {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		fmt.Println("waiting")
		<-usr1
	}
	if f.mib > 0 {
		touch(f.mib, f.paced, f.progress)
	}
	fmt.Println("ready")
	for f.hold {
		unix.Pause() // until killed
	}
}

// touch maps mib MiB and writes to every page. mmap, not a Go slice: the
// memory is outside the Go heap, so the garbage collector neither scans
// nor frees it. MAP_NORESERVE gets past the overcommit heuristic, for a
// hog larger than the machine.
func touch(mib int, paced, progress bool) {
	mem, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		fail(exitMem, "mmap %d MiB: %v", mib, err)
	}
	page := os.Getpagesize()
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
		done := i + page
		if done%(1<<20) == 0 && paced {
			time.Sleep(5 * time.Millisecond)
		}
		if done%(8<<20) == 0 && progress {
			fmt.Printf("memhog: touched %d MiB\n", done>>20)
		}
	}
	if progress {
		fmt.Printf("memhog: touched all %d MiB\n", mib)
	}
}

// bindNode binds this thread's future allocations to one NUMA node. The
// policy is per thread: the goroutine is locked to its thread, and touch
// runs on it.
func bindNode(node int) {
	runtime.LockOSThread()
	const mpolBind = 2 // MPOL_BIND, include/uapi/linux/mempolicy.h
	if node >= 64 {
		fail(exitUsage, "-bind-node %d: nodes 0 to 63 only", node)
	}
	mask := uint64(1) << node
	if _, _, errno := unix.Syscall(unix.SYS_SET_MEMPOLICY, mpolBind, uintptr(unsafe.Pointer(&mask)), 64+1); errno != 0 {
		fail(exitSetup, "set_mempolicy(MPOL_BIND, node %d): %v", node, errno)
	}
}

// writeMiB writes mib MiB to path a MiB at a time, so the writer itself
// stays small: the file's pages are the charge being tested.
func writeMiB(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Close()
}

// runChild runs memhog with args as a child (a container's init runs its
// main process) and returns the exit status a shell would give: 128+n for
// a signal.
func runChild(args []string) int {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		fail(exitSetup, "run child: %v", err)
	}
	return 0
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
		fail(exitMem, "mlockall: %v", err)
	}
	fd, err := unix.Open(file, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o600)
	if err != nil {
		fail(exitSetup, "create %s: %v", file, err)
	}
	joinCgroup(cgroup)
	for i := 0; i < mib; i++ {
		if _, err := unix.Write(fd, buf); err != nil {
			if err == unix.ENOMEM || err == unix.ENOSPC {
				// Say nothing: printing would be a charge in this cgroup too.
				os.Exit(0)
			}
			fail(exitWrite, "write: %v", err)
		}
	}
	fail(exitNoOOM, "wrote %d MiB without running out", mib)
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
		fail(exitMem, "mmap: %v", err)
	}
	// No transparent huge pages: they would be freed whole.
	unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	for i := page; i < len(mem); i += 2 * page {
		if err := unix.Madvise(mem[i:i+page], unix.MADV_DONTNEED); err != nil {
			fail(exitMem, "madvise: %v", err)
		}
	}
	const mlockOnFault = 1 // MLOCK_ONFAULT: lock the pages present, fault no others in
	if _, _, errno := unix.Syscall(unix.SYS_MLOCK2, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), mlockOnFault); errno != 0 {
		fail(exitMem, "mlock2: %v", errno)
	}
	fmt.Println("ready")
	for {
		unix.Pause()
	}
}

func memAvailableMiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		fail(exitMem, "read meminfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb >> 10
		}
	}
	fail(exitMem, "no MemAvailable in /proc/meminfo")
	return 0
}
