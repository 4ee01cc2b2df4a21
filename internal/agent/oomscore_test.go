// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// scoreFile is a stand-in for /proc/self/oom_score_adj holding value.
func scoreFile(t *testing.T, value string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "oom_score_adj")
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProtectFromOOMKiller(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inherited string // "": no such file
		target    int
		wantValue string // in the file afterwards
		wantLevel zapcore.Level
		wantMsg   string
	}{
		{"lowered from the default", "0\n", DefaultOOMScoreAdj, "-999", zapcore.InfoLevel, "oom_score_adj lowered"},
		{"lowered from the kubelet's", "-997\n", DefaultOOMScoreAdj, "-999", zapcore.InfoLevel, "oom_score_adj lowered"},
		{"a lower value set on purpose stays", "-1000\n", DefaultOOMScoreAdj, "-1000\n", zapcore.InfoLevel, "already at or below"},
		{"0 leaves it alone", "500\n", 0, "500\n", zapcore.InfoLevel, "left as inherited"},
		{"refused: the agent goes on and says what it risks", "", DefaultOOMScoreAdj, "", zapcore.WarnLevel, "oom_score_adj not lowered: a global OOM may kill the agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "missing", "oom_score_adj")
			if tc.inherited != "" {
				path = scoreFile(t, tc.inherited)
			}
			core, logs := observer.New(zapcore.DebugLevel)
			protectFromOOMKiller(path, tc.target, zap.New(core))

			if tc.inherited != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != tc.wantValue {
					t.Errorf("oom_score_adj is %q, want %q", b, tc.wantValue)
				}
			}
			all := logs.All()
			if len(all) != 1 {
				t.Fatalf("got %d log entries, want 1: %+v", len(all), all)
			}
			if all[0].Level != tc.wantLevel || !strings.Contains(all[0].Message, tc.wantMsg) {
				t.Errorf("logged %s %q, want %s containing %q", all[0].Level, all[0].Message, tc.wantLevel, tc.wantMsg)
			}
		})
	}
}

// The refusal names the value wanted and why it failed, so an operator
// can tell a missing CAP_SYS_RESOURCE from a kernel that refuses.
func TestProtectFromOOMKillerRefusalSaysWhy(t *testing.T) {
	path := scoreFile(t, "0\n")
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Skip("skipped: this user may write a read-only file (root: CAP_DAC_OVERRIDE), so the refusal cannot be made here")
	}
	core, logs := observer.New(zapcore.DebugLevel)
	protectFromOOMKiller(path, DefaultOOMScoreAdj, zap.New(core))
	all := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(all) != 1 {
		t.Fatalf("want one warning, got %+v", logs.All())
	}
	fields := all[0].ContextMap()
	if fields["wanted"] != int64(DefaultOOMScoreAdj) {
		t.Errorf("warning fields %v: want wanted=%d", fields, DefaultOOMScoreAdj)
	}
	if msg, _ := fields["error"].(string); !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "now 0") {
		t.Errorf("warning error %q: want the kernel's refusal and the value kept", msg)
	}
	if !strings.Contains(all[0].Message, "CAP_SYS_RESOURCE") {
		t.Errorf("warning %q: want the capability it needs", all[0].Message)
	}
}
