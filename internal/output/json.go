// SPDX-License-Identifier: Apache-2.0

// Package output writes events: one JSON object per line for log
// pipelines, or an incident card per event for a terminal.
package output

import (
	"fmt"
	"io"
	"sync"

	"github.com/oomtrace/oomtrace/internal/event"
)

// JSONLines writes each event as one JSON object on its own line, as the
// event package encodes it. A line is written with one Write call, and a
// failed or short write is returned, never swallowed.
type JSONLines struct {
	mu sync.Mutex
	w  io.Writer
}

// NewJSONLines writes to w, which should be unbuffered or flushed by Sync.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: w} }

// Write writes one event. The line's time is when the kernel saw the
// event, not when it was written.
func (j *JSONLines) Write(e *event.Event) error { return j.WriteTimed(e, nil) }

// WriteTimed is Write calling encoded (if not nil) once the line is
// encoded, before it is written: the latency benchmark times the two apart.
func (j *JSONLines) WriteTimed(e *event.Event, encoded func()) error {
	buf, err := event.EncodeLine(e)
	if err != nil {
		return err
	}
	defer buf.Free()
	if encoded != nil {
		encoded()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	n, err := j.w.Write(buf.Bytes())
	if err == nil && n < buf.Len() {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("write %s event: %w", e.Event, err)
	}
	return nil
}

// Sync flushes what was written, where w can.
func (j *JSONLines) Sync() error {
	if s, ok := j.w.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}
