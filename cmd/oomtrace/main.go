// SPDX-License-Identifier: Apache-2.0

// Command oomtrace traces OOM kills in the kernel as they happen and says,
// in one JSON line per event, who died, who triggered it, which cgroup's
// limit fired, and which pod and container it was.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes: 0 success, 1 failure, 2 usage error.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in how oomtrace was called.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs oomtrace with args and returns its exit code. Events and
// reports go to stdout; errors go to stderr, a usage error with the
// command to ask for help.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "oomtrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "oomtrace",
		Short: "Trace OOM kills in the kernel, with the pod, the cgroup and the limit that fired",
		Long: `oomtrace attaches eBPF programs to the kernel's OOM killer and writes one
JSON object per event to stdout: the victim, the task that triggered the
OOM, the memory cgroup whose limit fired with its usage and limit, and the
Kubernetes pod and container. Its own logs go to stderr.

It needs root (or CAP_BPF and CAP_PERFMON; deploy/README.md lists what
else each capability adds) and a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y). Run 'oomtrace check' to see what this
kernel supports.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newAgentCmd(), newTraceCmd(), newCheckCmd(), newVersionCmd())
	return root
}

// noArgs refuses arguments, saying which and that none are taken.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}

// isCobraUsageError recognises cobra's own errors for unknown commands and
// wrong argument counts, which it does not type.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
