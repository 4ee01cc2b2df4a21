// SPDX-License-Identifier: Apache-2.0

// Package output writes events: one JSON object per line for log
// pipelines, through zap so the agent's event stream and its own logs share
// one well-tested encoder.
package output

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oomtrace/oomtrace/internal/event"
)

// JSONLines writes each event as one JSON object on its own line.
type JSONLines struct {
	log *zap.Logger
}

// NewJSONLines writes to w, which should be unbuffered or flushed by Sync.
func NewJSONLines(w io.Writer) *JSONLines {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		MessageKey:     "event",
		TimeKey:        "time",
		EncodeTime:     encodeTimeUTC,
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeDuration: zapcore.NanosDurationEncoder,
	})
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), zapcore.DebugLevel)
	return &JSONLines{log: zap.New(core)}
}

// Write writes one event. The line's time is when the kernel saw the
// event, not when it was written.
func (j *JSONLines) Write(e *event.Event) error {
	ce := j.log.Check(zapcore.InfoLevel, e.Event)
	if ce == nil {
		return nil
	}
	ce.Time = e.Time
	ce.Write(eventFields(e)...)
	return nil
}

// Sync flushes what was written.
func (j *JSONLines) Sync() error { return j.log.Sync() }

// eventFields lists the fields after "event" and "time", in contract order.
func eventFields(e *event.Event) []zap.Field {
	f := []zap.Field{zap.String("node", e.Node)}
	if e.Victim != nil {
		f = append(f, zap.Reflect("victim", e.Victim))
	}
	if e.Trigger != nil {
		f = append(f, zap.Reflect("trigger", e.Trigger))
	}
	if e.Constraint != "" {
		f = append(f, zap.String("constraint", e.Constraint))
	}
	if e.Memcg != nil {
		f = append(f, zap.Reflect("memcg", e.Memcg))
	}
	if e.K8s != nil {
		f = append(f, zap.Reflect("k8s", e.K8s))
	}
	return f
}

// timeFormat is RFC 3339 with all nine digits of nanoseconds, so lines sort
// as text and every line has the same shape.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func encodeTimeUTC(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format(timeFormat))
}
