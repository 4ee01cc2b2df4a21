// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// logToZap sends client-go's own logs (klog) to the agent's logger, so
// that stderr stays one JSON object per line: klog would write its own
// text format there. Its verbose chatter is debug; its errors, warnings.
// Once per process, before client-go runs: klog's logger is global.
func logToZap(log *zap.Logger) {
	klogOnce.Do(func() { klog.SetLogger(logr.New(zapSink{log: log.Named("client-go")})) })
}

var klogOnce sync.Once

type zapSink struct{ log *zap.Logger }

func (zapSink) Init(logr.RuntimeInfo) {}

func (s zapSink) Enabled(level int) bool {
	return s.log.Core().Enabled(levelOf(level))
}

func (s zapSink) Info(level int, msg string, kv ...any) {
	s.log.Check(levelOf(level), msg).Write(zapFields(kv)...)
}

func (s zapSink) Error(err error, msg string, kv ...any) {
	s.log.Warn(msg, append(zapFields(kv), zap.Error(err))...)
}

func (s zapSink) WithValues(kv ...any) logr.LogSink { return zapSink{s.log.With(zapFields(kv)...)} }
func (s zapSink) WithName(name string) logr.LogSink { return zapSink{s.log.Named(name)} }

// levelOf: klog's level 0 is what it always says; the rest is detail.
func levelOf(v int) zapcore.Level {
	if v == 0 {
		return zap.InfoLevel
	}
	return zap.DebugLevel
}

func zapFields(kv []any) []zap.Field {
	fs := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, zap.Any(fmt.Sprint(kv[i]), kv[i+1]))
	}
	return fs
}
