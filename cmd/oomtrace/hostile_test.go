// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oomtrace/oomtrace/internal/event"
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

// A trace session's summary names pods and cgroups chosen by others
// quoted with escapes: nothing raw reaches the terminal, and each name
// keeps a line of its own.
func TestTraceSummaryHostileNames(t *testing.T) {
	for _, s := range safetexttest.Names {
		out, err := newSessionOutput("table", io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		sess := &session{out: out, start: time.Now(), byKind: map[string]uint64{}, byPod: map[string]uint64{}}
		for _, e := range []*event.Event{
			{Event: event.KindOOMKill, Victim: &event.Victim{Comm: s}, K8s: &event.K8s{Namespace: s, Pod: s, PodUID: "u"}},
			{Event: event.KindOOMKill, Victim: &event.Victim{Comm: s}, K8s: &event.K8s{PodUID: s}},
			{Event: s, Memcg: &event.Memcg{Path: "/" + s}},
		} {
			if _, err := sess.show(nil, e); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		sess.summary(&buf)
		if u := safetexttest.Unsafe(buf.String(), true); u != "" {
			t.Errorf("name %q: summary holds a %s:\n%s", s, u, buf.String())
		}
		q := safetext.Quote(s)
		for _, want := range []string{q + "/" + q, "pod " + q, "(no pod) cgroup " + safetext.Quote("/"+s)} {
			if !strings.Contains(buf.String(), "    "+want+" ") {
				t.Errorf("name %q: summary lacks a line for %s:\n%s", s, want, buf.String())
			}
		}
	}
}
