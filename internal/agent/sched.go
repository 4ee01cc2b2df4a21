// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pipelineSlice is the scheduler slice asked for the threads an event
// passes through (reading, enriching, writing). Since Linux 6.12 the fair
// scheduler (EEVDF) lets a waking task with a shorter slice than the
// running one preempt it; with the default slice a reader woken while
// both CPUs of a small node are busy (the OOMing workload itself, say)
// waits for the running task's slice to end at the next tick: 4 ms at
// HZ=250, measured here as most of the time from the kernel's timestamp
// to the record being read. A short slice changes neither priority nor
// share of CPU, needs no privilege, and older kernels ignore it.
const pipelineSlice = 100 * time.Microsecond

// lockPipelineThread locks the calling goroutine to its thread for the
// rest of its life and gives that thread pipelineSlice. The goroutine
// must never unlock: its thread then ends with it, so no other goroutine
// runs on a thread with the changed slice. The error says why the slice
// could not be set (tracing works either way).
func lockPipelineThread() error {
	runtime.LockOSThread()
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return err
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return nil // a real-time or idle policy someone chose: keep it
	}
	// The nice value and policy are kept; only the slice changes.
	attr.Runtime = uint64(pipelineSlice.Nanoseconds())
	return unix.SchedSetAttr(0, attr, 0)
}
