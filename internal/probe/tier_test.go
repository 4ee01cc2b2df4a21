// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"strings"
	"testing"
)

// The tracepoint tier is tp_btf only: no program is a perf tracepoint, so
// nothing in oomtrace needs tracefs.
func TestTracepointTierIsTPBTF(t *testing.T) {
	for _, h := range hooks {
		for _, f := range h.forms {
			for _, p := range f.progs {
				if (f.tier == TierTracepoint) != (p.kind == attachTPBTF) {
					t.Errorf("hook %s, %s form: program %s attaches as kind %d; the tracepoint tier is tp_btf, and only it", h.name, f.tier, p.name, p.kind)
				}
			}
		}
	}
}

func TestParseTier(t *testing.T) {
	for _, tier := range []Tier{TierFentry, TierKprobe, TierTracepoint} {
		if got, err := ParseTier(tier.String()); err != nil || got != tier {
			t.Errorf("ParseTier(%q) = %v, %v; want %v", tier.String(), got, err, tier)
		}
	}
	for _, bad := range []string{"", "none", "Fentry", "perf"} {
		_, err := ParseTier(bad)
		if err == nil || !strings.Contains(err.Error(), "want fentry, kprobe or tracepoint") {
			t.Errorf("ParseTier(%q): error %v, want one listing the tiers", bad, err)
		}
	}
}
