// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"

	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/probe"
)

// logChoices says at start, per hook, which tier is attached. A hook this
// kernel does not need (e.g. __oom_kill_process where mark_victim passes
// the victim's task) or one turned off (--alloc-failures=false) is news,
// not a problem: info. A hook that is wanted but cannot be attached means
// events will lack what it sees: a warning.
func logChoices(choices []probe.Choice, log *zap.Logger) {
	for _, c := range choices {
		fields := []zap.Field{zap.String("hook", c.Hook), zap.Stringer("tier", c.Tier), zap.String("detail", c.Detail)}
		if len(c.Skipped) > 0 {
			fields = append(fields, zap.Strings("passed_over", c.Skipped))
		}
		switch {
		case c.NotNeeded:
			log.Info("hook not needed on this kernel", fields...)
		case c.Off:
			log.Info("hook off", fields...)
		case c.Tier == probe.TierNone:
			log.Warn("hook not attached", fields...)
		default:
			log.Info("attached", fields...)
		}
	}
}

// detacher is the part of *probe.Probes that stops new records.
type detacher interface{ Detach() error }

// detachWhenDone makes ctx's end the one place shutdown starts: it
// detaches the probes, so the reader drains what is buffered and stops.
// Call the returned function before closing the probes: it cancels the
// detach when the agent returns for another reason, or waits for one
// under way, so nothing touches probes that are already closed.
func detachWhenDone(ctx context.Context, p detacher, log *zap.Logger) (stop func()) {
	done := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		defer close(done)
		log.Info("stopping: detaching probes and draining the ring buffer")
		if err := p.Detach(); err != nil {
			log.Warn("detach", zap.Error(err))
		}
	})
	return func() {
		if !cancel() {
			<-done
		}
	}
}
