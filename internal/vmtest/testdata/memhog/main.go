// SPDX-License-Identifier: Apache-2.0

// memhog maps and touches N MiB of anonymous memory, printing progress: run in
// a cgroup whose memory.max is below N it gets OOM-killed. If it survives it
// exits 0, so a missing OOM shows up as a failed check and not as a hang.
// The vmtest tests build it static for the guest.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: memhog MiB")
		os.Exit(2)
	}
	mib, err := strconv.Atoi(os.Args[1])
	if err != nil || mib <= 0 {
		fmt.Fprintf(os.Stderr, "memhog: bad size %q\n", os.Args[1])
		os.Exit(2)
	}
	// mmap, not a Go slice: the memory is outside the Go heap, so the garbage
	// collector neither scans nor frees it.
	mem, err := syscall.Mmap(-1, 0, mib<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memhog: mmap %d MiB: %v\n", mib, err)
		os.Exit(1)
	}
	page := os.Getpagesize()
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
		if (i+page)%(8<<20) == 0 {
			fmt.Printf("memhog: touched %d MiB\n", (i+page)>>20)
		}
	}
	fmt.Printf("memhog: touched all %d MiB\n", mib)
}
