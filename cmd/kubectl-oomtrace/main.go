// SPDX-License-Identifier: Apache-2.0

// Command kubectl-oomtrace is the kubectl plugin `kubectl oomtrace`: it
// runs an `oomtrace trace` session for one pod inside the oomtrace agent's
// pod on that pod's node, through the kubectl binary that started it, so
// kubectl's own flags, kubeconfig and credentials apply unchanged.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit codes: 0 success, 1 failure, 2 usage error (as oomtrace's own); a
// session's status is passed on as it is.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	if opts.output == "" {
		opts.output = "json"
		if isTerminal(stdout) {
			opts.output = "table"
		}
	}
	opts.tty = opts.output != "json" && isTerminal(stdout) && isTerminal(stdin)
	k := &kubectl{path: "kubectl", globals: opts.globals, run: runKubectl}
	if p := os.Getenv("OOMTRACE_KUBECTL"); p != "" {
		k.path = p
	}
	target, err := k.findTarget(opts)
	if err != nil {
		return fail(stderr, err)
	}
	cmd := exec.Command(k.path, k.execArgs(opts, target)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if !opts.tty {
		// The session ends when its stdin closes: give kubectl a pipe
		// that closes when kubectl or this process ends, not the
		// caller's stdin (often empty, as </dev/null).
		r, w, err := os.Pipe()
		if err != nil {
			fmt.Fprintf(stderr, "kubectl-oomtrace: %v\n", err)
			return exitFailure
		}
		defer w.Close()
		cmd.Stdin = r
		defer r.Close()
	}
	// Ctrl-C reaches kubectl too (same process group); this process waits
	// for it to end the session and passes its status on. A TERM sent to
	// this process alone is passed to kubectl.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "kubectl-oomtrace: %v\n", err)
		return exitFailure
	}
	go func() {
		for s := range signals {
			if s == syscall.SIGTERM {
				cmd.Process.Signal(s)
			}
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(stderr, "kubectl-oomtrace: %v\n", err)
		return exitFailure
	}
	return 0
}

// fail prints err and returns its exit code.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "kubectl-oomtrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'kubectl oomtrace --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

// runKubectl runs kubectl and returns its stdout and stderr.
func runKubectl(path string, args []string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(path, args...)
	var errBuf limitedBuffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	return out, errBuf.b, err
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
