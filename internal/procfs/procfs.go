// SPDX-License-Identifier: Apache-2.0

// Package procfs reads what the kernel shows in /proc that oomtrace needs at
// the moment of an event: the buddy allocator's free blocks per order
// (/proc/buddyinfo), to tell fragmentation from a real shortage when a
// high-order allocation fails, and each process's memory as the OOM killer
// counts it (/proc/PID/status, /proc/PID/oom_score_adj), to rank the tasks
// the kernel would choose from with its own oom_badness() arithmetic.
//
// Parsers take an io.Reader so that captured files can be tested; the Read
// functions open the live files. Malformed input gives an error naming the
// line and what was expected, never a panic.
package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unicode/utf8"
)

// procRoot is where proc is mounted; tests point it at a fake tree.
var procRoot = "/proc"

// maxLine bounds one line of a proc file. Mems_allowed on a machine with
// many NUMA nodes is the longest line in status and is far below this.
const maxLine = 1 << 20

func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	return sc
}

// readProcFile reads a whole proc file. A file opened just before its
// process exits fails to read with ESRCH rather than ENOENT; both mean the
// process is gone, so both wrap os.ErrNotExist for the caller.
func readProcFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil && errors.Is(err, syscall.ESRCH) {
		return nil, fmt.Errorf("%w: %w", err, os.ErrNotExist)
	}
	return data, err
}

// excerpt quotes a line for an error, shortened so that garbage input
// cannot make an error message arbitrarily long.
func excerpt(line string) string {
	const limit = 64
	if len(line) <= limit {
		return fmt.Sprintf("%q", line)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut-- // do not split a character
	}
	return fmt.Sprintf("%q...", line[:cut])
}
