// SPDX-License-Identifier: Apache-2.0

package safetext_test

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"memhog", "memhog"},
		{"/system.slice/system-serial\\x2dgetty.slice", "/system.slice/system-serial\\x2dgetty.slice"},
		{"with space \"and quotes\"", "with space \"and quotes\""},
		{"red\x1b[31m", `red\x1b[31m`},
		{"a\nb\rc\td", `a\nb\rc\td`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"c1\u009b", `c1\u009b`},
		{"bidi\u202e", `bidi\u202e`},
		{"bad\x80\xff", `bad\x80\xff`},
		{"real\ufffd", "real\ufffd"},
		{"名前", "名前"},
	} {
		if got := safetext.Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"memhog", "memhog"},
		{"/kubepods/pod1/abc", "/kubepods/pod1/abc"},
		{"back\\slash", "back\\slash"}, // bare: no quote to confuse it with
		{"", `""`},
		{"two words", `"two words"`},
		{`quo"te`, `"quo\"te"`},
		{"red\x1b[31m", `"red\x1b[31m"`},
		{"line\nforged", `"line\nforged"`},
		{"bad\x80", `"bad\x80"`},
		{"bidi\u202e", `"bidi\u202e"`},
	} {
		if got := safetext.Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHostileNames(t *testing.T) {
	for _, s := range safetexttest.Names {
		checkQuote(t, s)
		checkEscape(t, s)
	}
}

// checkQuote: no unsafe rune out, one word, and the name comes back.
func checkQuote(t *testing.T, s string) {
	t.Helper()
	q := safetext.Quote(s)
	if u := safetexttest.Unsafe(q, false); u != "" {
		t.Fatalf("Quote(%q) = %q: %s", s, q, u)
	}
	if q == s {
		if strings.ContainsAny(s, " \"") || s == "" {
			t.Fatalf("Quote(%q) left it bare", s)
		}
		return
	}
	back, err := strconv.Unquote(q)
	if err != nil || back != s {
		t.Fatalf("Quote(%q) = %q, which unquotes to %q (%v)", s, q, back, err)
	}
}

func checkEscape(t *testing.T, s string) {
	t.Helper()
	e := safetext.Escape(s)
	if u := safetexttest.Unsafe(e, false); u != "" {
		t.Fatalf("Escape(%q) = %q: %s", s, e, u)
	}
	if !utf8.ValidString(e) {
		t.Fatalf("Escape(%q) = %q: invalid UTF-8", s, e)
	}
}

// FuzzSafeText: whatever the input, nothing unsafe comes out, and a
// quoted name unquotes to the input.
func FuzzSafeText(f *testing.F) {
	for _, s := range safetexttest.Names {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkQuote(t, s)
		checkEscape(t, s)
	})
}
