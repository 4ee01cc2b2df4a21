// SPDX-License-Identifier: Apache-2.0

package main

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oomtrace/oomtrace/internal/safetext"
)

// escapingCore keeps text chosen by others (cgroup paths and process
// names in messages, fields and errors) from reaching the terminal that
// shows the agent's logs raw: zap's JSON encoder escapes quotes and C0
// controls, but writes DEL, C1 controls, bidi overrides and the like as
// they are. Each message, string field and error passes through
// safetext.Escape first.
type escapingCore struct{ zapcore.Core }

func (c escapingCore) With(fields []zapcore.Field) zapcore.Core {
	return escapingCore{c.Core.With(escapeFields(fields))}
}

func (c escapingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c escapingCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	e.Message = safetext.Escape(e.Message)
	return c.Core.Write(e, escapeFields(fields))
}

// escapeFields returns fields with their text escaped; fields itself when
// nothing needed it.
func escapeFields(fields []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field
	for i, f := range fields {
		changed := false
		switch f.Type {
		case zapcore.StringType:
			if e := safetext.Escape(f.String); e != f.String {
				f.String, changed = e, true
			}
		case zapcore.ErrorType:
			if err, ok := f.Interface.(error); ok && err != nil {
				// Its text alone: errorVerbose would repeat it raw.
				f, changed = zap.String(f.Key, safetext.Escape(err.Error())), true
			}
		}
		if changed && out == nil {
			out = append(make([]zapcore.Field, 0, len(fields)), fields[:i]...)
		}
		if out != nil {
			out = append(out, f)
		}
	}
	if out == nil {
		return fields
	}
	return out
}
