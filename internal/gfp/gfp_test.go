// SPDX-License-Identifier: Apache-2.0

package gfp

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestNames(t *testing.T) {
	f := Default()
	for mask, want := range map[uint32]string{
		0:               "none",
		0xcc0:           "GFP_KERNEL", // as this kernel's OOM report prints it
		0xcc0 | 0x40000: "GFP_KERNEL|__GFP_COMP",
		0x400cc0:        "GFP_KERNEL_ACCOUNT",
		0x346cca:        "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE", // hugetlb pool growth
		0xa20:           "GFP_ATOMIC",                                                                      // with __GFP_ATOMIC, before 6.4
		0x800:           "GFP_NOWAIT",
		0x140cca:        "GFP_HIGHUSER_MOVABLE|__GFP_COMP",
		0xcc0 | 0x10000: "GFP_KERNEL|__GFP_NORETRY",
		0x80000000:      "0x80000000",
	} {
		if got := f.Names(mask); got != want {
			t.Errorf("Names(%#x) = %q, want %q", mask, got, want)
		}
	}
}

// On kernels that describe the bits in BTF, the common flags must agree
// with the table older kernels use.
func TestFromBTF(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("skipped: kernel BTF: %v", err)
	}
	f := FromBTF(spec)
	for _, n := range []string{"__GFP_NOWARN", "__GFP_ACCOUNT", "__GFP_COMP", "__GFP_IO", "__GFP_FS"} {
		if f.Bit(n) != defaultBits[n] {
			t.Errorf("%s = %#x from BTF, %#x by default", n, f.Bit(n), defaultBits[n])
		}
	}
	if got := f.Names(0xcc0); got != "GFP_KERNEL" {
		t.Errorf("Names(0xcc0) = %q with BTF bits", got)
	}
}

// layout is the default table with every bit moved by n places and,
// when drop names one (in name order), a flag left out: kernels renumber
// the flags and drop some (6.8 and later, from BTF).
func layout(n, drop uint8) *Flags {
	f := &Flags{bits: map[string]uint32{}}
	names := slices.Sorted(maps.Keys(defaultBits))
	for i, name := range names {
		if i != int(drop) {
			b := defaultBits[name]
			f.bits[name] = b<<(n%32) | b>>(32-n%32)
		}
	}
	return f
}

// maskOf is the mask a part of Names' output stands for; false when it
// is no name of f's and no hex number.
func (f *Flags) maskOf(part string) (uint32, bool) {
	if part == "__GFP_RECLAIM" {
		return f.or("__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM"), true
	}
	if b, ok := f.bits[part]; ok {
		return b, true
	}
	for _, c := range f.composites() {
		if c.name == part {
			return c.mask, true
		}
	}
	var m uint32
	if _, err := fmt.Sscanf(part, "0x%x", &m); err == nil && fmt.Sprintf("%#x", m) == part {
		return m, true
	}
	return 0, false
}

// FuzzNames: whatever the mask and the kernel's bit layout, the names
// stand for disjoint parts of the mask that make up all of it, each
// named once, so a reader can rebuild the mask from the text.
func FuzzNames(f *testing.F) {
	for _, m := range []uint32{0, 0xcc0, 0x400cc0, 0x346cca, 0xa20, 0x800, 0x80000000, 0xffffffff} {
		f.Add(m, uint8(0), uint8(255))
	}
	f.Add(uint32(0x346cca), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, mask uint32, rotate, drop uint8) {
		flags := layout(rotate, drop)
		s := flags.Names(mask)
		if mask == 0 {
			if s != "none" {
				t.Fatalf("Names(0) = %q", s)
			}
			return
		}
		var union uint32
		seen := map[string]bool{}
		for _, part := range strings.Split(s, "|") {
			m, ok := flags.maskOf(part)
			if !ok || m == 0 {
				t.Fatalf("Names(%#x) = %q: %q is no flag", mask, s, part)
			}
			if seen[part] || union&m != 0 {
				t.Fatalf("Names(%#x) = %q: %q repeats bits", mask, s, part)
			}
			seen[part] = true
			union |= m
		}
		if union != mask {
			t.Fatalf("Names(%#x) = %q, which stands for %#x", mask, s, union)
		}
	})
}
