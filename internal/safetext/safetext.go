// SPDX-License-Identifier: Apache-2.0

// Package safetext makes text chosen by others (process names, cgroup
// paths, mount points, error messages that quote them) safe to show to
// a person: on a terminal, in a Kubernetes Event, in a log line or a
// metric label. Nothing it returns holds a control character (C0, DEL,
// C1), a format character (bidi overrides, zero-width marks), a line or
// paragraph separator, or invalid UTF-8: each such rune or byte is
// written as a Go escape (\n, \x1b, \u202e, \x80 for an invalid byte),
// so it can neither move the cursor, recolour, retitle or reorder what a
// terminal shows, nor start a line of its own.
//
// The event line (internal/event) is JSON and escapes on its own,
// losslessly; this package is for text people read.
package safetext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// safe reports whether r may reach a terminal as it is: a letter, mark,
// number, punctuation, symbol or the ASCII space (strconv's notion of
// printable; every other space is escaped too, so none hides).
func safe(r rune) bool { return unicode.IsPrint(r) }

// clean reports whether s is valid UTF-8 made only of safe runes.
func clean(s string) bool {
	for _, r := range s {
		// An invalid byte decodes as RuneError, which is printable:
		// tell it from a real U+FFFD by its width.
		if r == utf8.RuneError || !safe(r) {
			return false
		}
	}
	return true
}

// Escape returns s with every unsafe rune and invalid byte replaced by
// its Go escape; s itself when there is none. For sentences (error
// messages, summaries) where quotes would get in the way: a backslash
// already in s is kept as it is (systemd's unit names hold \x2d), so the
// result is for reading, not for reversing. Use Quote for a name.
func Escape(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[i])&0xf, 16))
		case safe(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\n', '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// Quote returns a name for a person to read: s as it is when it is a
// plain word (safe runes, no space, no double quote), else s in double
// quotes with Go's escapes (strconv.Quote), so a name cannot pass for
// more than one word, split a table's columns, or hold a control
// character. Bare or quoted, the name is unambiguous: a quoted one
// unquotes (strconv.Unquote) to exactly s, invalid bytes included, and
// a bare one never starts with a quote.
func Quote(s string) string {
	if s != "" && clean(s) && !strings.ContainsAny(s, ` "`) {
		return s
	}
	return strconv.Quote(s)
}
