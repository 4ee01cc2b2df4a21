// SPDX-License-Identifier: Apache-2.0

package probe

import "fmt"

// Tier is how a hook is attached. Better tiers cost less and see more; the
// agent picks the best one the running kernel allows, per hook.
type Tier int

const (
	TierNone Tier = iota
	// TierFentry: fentry/fexit (BPF trampolines), typed arguments, cheapest.
	TierFentry
	// TierKprobe: kprobe/kretprobe, needs CONFIG_KPROBES.
	TierKprobe
	// TierTracepoint: tp_btf (BTF-typed raw tracepoints), stable but sees
	// less: only what the tracepoints pass.
	TierTracepoint
)

func (t Tier) String() string {
	switch t {
	case TierFentry:
		return "fentry"
	case TierKprobe:
		return "kprobe"
	case TierTracepoint:
		return "tracepoint"
	}
	return "none"
}

// ParseTier reads a --tier value.
func ParseTier(s string) (Tier, error) {
	for _, t := range []Tier{TierFentry, TierKprobe, TierTracepoint} {
		if t.String() == s {
			return t, nil
		}
	}
	return TierNone, fmt.Errorf("tier %q: want fentry, kprobe or tracepoint", s)
}
