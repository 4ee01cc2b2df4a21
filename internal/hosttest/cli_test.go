// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// What a person sees when they call oomtrace right or wrong.
func TestCLI(t *testing.T) {
	requireTracing(t)
	for _, tc := range []struct {
		name     string
		args     []string
		nobody   bool // run as user nobody
		wantCode int
		wantOut  []string // in stdout+stderr
	}{
		{"version", []string{"version"}, false, 0, []string{"oomtrace "}},
		{"help teaches with examples", []string{"agent", "--help"}, false, 0, []string{"--ready-file", "Examples:", "SIGTERM"}},
		{"unknown flag is a usage error", []string{"agent", "--bogus"}, false, 2, []string{"unknown flag: --bogus", "oomtrace agent --help"}},
		{"unknown command is a usage error", []string{"frobnicate"}, false, 2, []string{"unknown command"}},
		{"bad log level is a usage error", []string{"agent", "--log-level", "loud"}, false, 2, []string{`--log-level "loud": want debug, info, warn or error`}},
		{"bad ring buffer size names the input", []string{"agent", "--ringbuf-size", "1000"}, false, 2, []string{"ring buffer size 1000: want a power of two"}},
		{"check reports the hook and its tier", []string{"check"}, false, 0, []string{"oom:mark_victim", "tracepoint", "OOM kills can be traced"}},
		{"not root says what is needed", []string{"agent", "--metrics-addr="}, true, 1, []string{"run as root, or grant CAP_BPF and CAP_PERFMON", "lacks CAP_BPF and CAP_PERFMON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(oomtraceBin, tc.args...)
			if tc.nobody {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
