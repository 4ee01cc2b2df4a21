// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The agent lowers its own oom_score_adj at start so a global OOM kills it
// last; where the kernel refuses (this development machine refuses
// negative values even to root), it says so and traces anyway.
func TestAgentLowersItsOOMScoreAdj(t *testing.T) {
	requireTracing(t)
	a := startAgent(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	adj := strings.TrimSpace(string(b))
	a.stop(t)

	var warning string
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		var l struct {
			Level, Msg, Error string
		}
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "oom_score_adj not lowered") {
			warning = l.Level + " " + l.Msg + ": " + l.Error
		}
	}
	switch {
	case adj == "-999":
		if warning != "" {
			t.Errorf("oom_score_adj is -999, yet the agent warned: %s", warning)
		}
	case warning == "":
		t.Errorf("oom_score_adj is %s, want -999 or a warning saying why not; stderr:\n%s", adj, a.stderr.String())
	case !strings.HasPrefix(warning, "warn ") || !strings.Contains(warning, "write -999 to /proc/self/oom_score_adj"):
		t.Errorf("refusal logged as %q: want a warning naming the value and the file", warning)
	default:
		t.Logf("the kernel refused, as logged: %s", warning)
	}
}
