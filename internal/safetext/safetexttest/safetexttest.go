// SPDX-License-Identifier: Apache-2.0

// Package safetexttest holds names a hostile workload may choose, and a
// check that text shown to people holds nothing of them raw, for the
// tests of every package that shows names.
package safetexttest

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Names are process and cgroup names built to break what shows them:
// quotes, a fake JSON field, terminal escapes (CSI colour and cursor
// moves, OSC window title, an 8-bit CSI), newlines and carriage returns
// that forge a line, backspaces, NUL, DEL, C1 controls, bidi overrides,
// zero-width and separator characters, and invalid UTF-8 (a lone
// continuation byte, a cut sequence, an encoded surrogate, overlong).
var Names = []string{
	`quo"te`,
	`x","event":"forged`,
	"back\\slash",
	"red\x1b[31mtext\x1b[0m",
	"\x1b[2J\x1b[Hclear",
	"\x1b]0;owned\x07title",
	"\x1b]8;;http://x/\x1b\\link",
	"csi\u009b31m8bit",
	"line\nforged: 1",
	"cr\rover",
	"tab\there",
	"bs\b\b\bhid",
	"nul\x00byte",
	"del\x7fete",
	"c1\u0085nel\u009dosc",
	"bidi\u202eevil\u202c",
	"iso\u2066late\u2069",
	"zero\u200bwidth\ufeff",
	"sep\u2028line\u2029para",
	"bad\x80utf8",
	"cut\xe2\x82",
	"surr\xed\xa0\x80",
	"over\xc0\xaflong",
	"\xff\xfe",
	"ok name with spaces",
	"\u00a0nbsp",
}

// Unsafe returns a description of the first rune or byte in s that must
// not reach a terminal raw (a control, format or private-use character,
// a line or paragraph separator, invalid UTF-8), or "" when there is
// none. newlines says whether \n may appear
// (as a line end of the output itself).
func Unsafe(s string, newlines bool) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Sprintf("invalid UTF-8 byte %#x at %d", s[i], i)
		case r == '\n' && newlines:
		case unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs):
			return fmt.Sprintf("raw %U at %d", r, i)
		}
		i += n
	}
	return ""
}
