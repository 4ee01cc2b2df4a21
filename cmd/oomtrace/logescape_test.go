// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// A log line that quotes a name chosen by others (in its message, a
// field, an error, a logger's own fields) is one line of JSON holding
// nothing raw for a terminal, the name escaped.
func TestLogEscapesHostileNames(t *testing.T) {
	for _, s := range safetexttest.Names {
		var buf bytes.Buffer
		core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)
		log := zap.New(escapingCore{core}).With(zap.String("cgroup", "/"+s))
		log.Warn("memory.stat of /"+s, zap.String("comm", s), zap.Error(errors.New("open /"+s+": gone")),
			zap.Int("pid", 7), zap.Strings("paths", []string{"/a"}))
		out := buf.String()
		if u := safetexttest.Unsafe(out, true); u != "" {
			t.Errorf("name %q: %s: %s", s, u, out)
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("name %q: not one line: %q", s, out)
		}
		var fields map[string]any
		if err := json.Unmarshal(buf.Bytes(), &fields); err != nil {
			t.Fatalf("name %q: %v: %s", s, err, out)
		}
		e := safetext.Escape(s)
		for k, want := range map[string]string{"msg": "memory.stat of /" + e, "comm": e, "cgroup": "/" + e, "error": "open /" + e + ": gone"} {
			if fields[k] != want {
				t.Errorf("name %q: %s = %q, want %q", s, k, fields[k], want)
			}
		}
	}
}
