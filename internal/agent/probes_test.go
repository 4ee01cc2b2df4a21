// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oomtrace/oomtrace/internal/probe"
)

// A hook this kernel does not need is said at info level, as what it is;
// a wanted hook that cannot be attached stays a warning.
func TestLogChoices(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logChoices([]probe.Choice{
		{Hook: "oom:mark_victim", Tier: probe.TierTracepoint, Detail: "tp_btf, full format (task, uid)"},
		{Hook: "__oom_kill_process", Tier: probe.TierNone, NotNeeded: true, Detail: "not needed on this kernel: mark_victim passes the victim's task"},
		{Hook: "mem_cgroup_out_of_memory", Tier: probe.TierNone, Detail: "not attached: fentry (fentry/fexit): kernel refuses fentry programs; kprobe (kprobe/kretprobe): no kprobes"},
		{Hook: "page_alloc_failure", Tier: probe.TierNone, Off: true, Detail: "off: --alloc-failures=false"},
	}, zap.New(core))

	want := map[string]struct {
		level zapcore.Level
		msg   string
	}{
		"oom:mark_victim":          {zapcore.InfoLevel, "attached"},
		"__oom_kill_process":       {zapcore.InfoLevel, "hook not needed on this kernel"},
		"mem_cgroup_out_of_memory": {zapcore.WarnLevel, "hook not attached"},
		"page_alloc_failure":       {zapcore.InfoLevel, "hook off"},
	}
	if n := logs.Len(); n != len(want) {
		t.Fatalf("%d log entries, want one per hook: %+v", n, logs.All())
	}
	for _, e := range logs.All() {
		hook, _ := e.ContextMap()["hook"].(string)
		w, ok := want[hook]
		if !ok {
			t.Errorf("entry for unknown hook %q", hook)
			continue
		}
		if e.Level != w.level || e.Message != w.msg {
			t.Errorf("%s: logged %s %q, want %s %q", hook, e.Level, e.Message, w.level, w.msg)
		}
	}
}

type countingDetacher struct{ n atomic.Int32 }

func (d *countingDetacher) Detach() error { d.n.Add(1); return nil }

// Shutdown has one owner: the end of the context detaches once, and an
// agent that returned for another reason never detaches afterwards.
func TestDetachWhenDone(t *testing.T) {
	t.Run("stop signal detaches once", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		d := &countingDetacher{}
		stop := detachWhenDone(ctx, d, zap.NewNop())
		cancel()
		deadline := time.Now().Add(5 * time.Second)
		for d.n.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		stop()
		if n := d.n.Load(); n != 1 {
			t.Errorf("Detach called %d times, want 1", n)
		}
	})
	t.Run("no detach after the agent returned", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		d := &countingDetacher{}
		stop := detachWhenDone(ctx, d, zap.NewNop())
		stop() // the agent returns, e.g. on a ring buffer read error
		cancel()
		time.Sleep(50 * time.Millisecond)
		if n := d.n.Load(); n != 0 {
			t.Errorf("Detach called %d times after the agent returned, want 0", n)
		}
	})
}
