// SPDX-License-Identifier: Apache-2.0

package eventtest

import (
	"strings"

	"github.com/oomtrace/oomtrace/internal/event"
)

// HasFrame reports whether a symbolized stack has a frame in function fn
// (or a compiler clone of it, fn.isra.0 and the like).
func HasFrame(stack []string, fn string) bool {
	for _, f := range stack {
		if strings.HasPrefix(f, fn+"+") || strings.HasPrefix(f, fn+".") {
			return true
		}
	}
	return false
}

// Summary returns the summary of the diagnosis with code, or "".
func Summary(e *event.Event, code string) string {
	for _, f := range e.Diagnosis {
		if f.Code == code {
			return f.Summary
		}
	}
	return ""
}
