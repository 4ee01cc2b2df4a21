// SPDX-License-Identifier: Apache-2.0

// Package output writes events: one JSON object per line for log
// pipelines, through zap so the agent's event stream and its own logs share
// one well-tested encoder.
package output

import (
	"io"
	"reflect"
	"strings"
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

// eventFields turns the event's fields after "event" and "time" into zap
// fields, in declaration order, honouring json tags and omitempty, so a
// field added to event.Event reaches the output without an edit here.
func eventFields(e *event.Event) []zap.Field {
	v := reflect.ValueOf(e).Elem()
	t := v.Type()
	fields := make([]zap.Field, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "event" || name == "time" || name == "-" || name == "" {
			continue // "event" and "time" are zap's message and time keys
		}
		f := v.Field(i)
		if opts == "omitempty" && f.IsZero() {
			continue
		}
		fields = append(fields, zap.Reflect(name, f.Interface()))
	}
	return fields
}

// timeFormat is RFC 3339 with all nine digits of nanoseconds, so lines sort
// as text and every line has the same shape.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func encodeTimeUTC(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format(timeFormat))
}
