// SPDX-License-Identifier: Apache-2.0

// Package gfp names the kernel's allocation flags (gfp_t) the way the
// kernel prints them ("GFP_KERNEL|__GFP_COMP"). Bit values moved between
// kernel versions: from 6.8 the kernel describes them in BTF (enum
// ___GFP_*_BIT) and they are read from there; older kernels use the values
// they have had since 4.20, which are the defaults here.
package gfp

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Flags maps flag names to their bits on one kernel.
type Flags struct {
	bits map[string]uint32 // "__GFP_NOWARN" → 0x2000
}

// Default bits of the single flags, as in Linux 4.20 to 6.7.
var defaultBits = map[string]uint32{
	"__GFP_DMA": 0x01, "__GFP_HIGHMEM": 0x02, "__GFP_DMA32": 0x04, "__GFP_MOVABLE": 0x08,
	"__GFP_RECLAIMABLE": 0x10, "__GFP_HIGH": 0x20, "__GFP_IO": 0x40, "__GFP_FS": 0x80,
	"__GFP_ZERO": 0x100, "__GFP_ATOMIC": 0x200, "__GFP_DIRECT_RECLAIM": 0x400,
	"__GFP_KSWAPD_RECLAIM": 0x800, "__GFP_WRITE": 0x1000, "__GFP_NOWARN": 0x2000,
	"__GFP_RETRY_MAYFAIL": 0x4000, "__GFP_NOFAIL": 0x8000, "__GFP_NORETRY": 0x10000,
	"__GFP_MEMALLOC": 0x20000, "__GFP_COMP": 0x40000, "__GFP_NOMEMALLOC": 0x80000,
	"__GFP_HARDWALL": 0x100000, "__GFP_THISNODE": 0x200000, "__GFP_ACCOUNT": 0x400000,
}

// Default is the flag table of kernels before 6.8.
func Default() *Flags {
	f := &Flags{bits: map[string]uint32{}}
	for n, b := range defaultBits {
		f.bits[n] = b
	}
	return f
}

// FromBTF reads the flag bits from the kernel's BTF (enum ___GFP_*_BIT,
// Linux 6.8+), or returns Default when the kernel does not describe them.
func FromBTF(spec *btf.Spec) *Flags {
	if spec == nil {
		return Default()
	}
	var bitEnum *btf.Enum
	for typ, err := range spec.All() {
		if err != nil {
			break
		}
		if e, ok := typ.(*btf.Enum); ok {
			for _, v := range e.Values {
				if v.Name == "___GFP_NOWARN_BIT" {
					bitEnum = e
				}
			}
		}
		if bitEnum != nil {
			break
		}
	}
	if bitEnum == nil {
		return Default()
	}
	f := &Flags{bits: map[string]uint32{}}
	for _, v := range bitEnum.Values {
		name, ok := strings.CutSuffix(v.Name, "_BIT")
		if !ok || name == "___GFP_LAST" || v.Value >= 32 {
			continue
		}
		f.bits["__GFP_"+strings.TrimPrefix(name, "___GFP_")] = 1 << v.Value
	}
	return f
}

// Bit is a single flag's value, 0 when this kernel has no such flag.
func (f *Flags) Bit(name string) uint32 { return f.bits[name] }

func (f *Flags) or(names ...string) uint32 {
	var m uint32
	for _, n := range names {
		m |= f.bits[n]
	}
	return m
}

// composites lists the kernel's combined names in the order the kernel's
// gfpflag_names table tries them: the widest first.
func (f *Flags) composites() []struct {
	name string
	mask uint32
} {
	reclaim := f.or("__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM")
	kernel := reclaim | f.or("__GFP_IO", "__GFP_FS")
	user := kernel | f.or("__GFP_HARDWALL")
	highuser := user | f.or("__GFP_HIGHMEM")
	movable := highuser | f.or("__GFP_MOVABLE")
	thpLight := (movable | f.or("__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_NOWARN")) &^ reclaim
	return []struct {
		name string
		mask uint32
	}{
		{"GFP_TRANSHUGE", thpLight | f.or("__GFP_DIRECT_RECLAIM")},
		{"GFP_TRANSHUGE_LIGHT", thpLight},
		{"GFP_HIGHUSER_MOVABLE", movable},
		{"GFP_HIGHUSER", highuser},
		{"GFP_USER", user},
		{"GFP_KERNEL_ACCOUNT", kernel | f.or("__GFP_ACCOUNT")},
		{"GFP_KERNEL", kernel},
		{"GFP_NOFS", reclaim | f.or("__GFP_IO")},
		{"GFP_ATOMIC", f.or("__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM")},
		{"GFP_NOIO", reclaim},
		{"GFP_NOWAIT", f.or("__GFP_KSWAPD_RECLAIM")},
	}
}

// singleOrder is the order the kernel prints single flags in.
var singleOrder = []string{
	"__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_HIGH", "__GFP_ATOMIC", "__GFP_IO",
	"__GFP_FS", "__GFP_ZERO", "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM",
	"__GFP_WRITE", "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY",
	"__GFP_MEMALLOC", "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE",
	"__GFP_ACCOUNT", "__GFP_MOVABLE", "__GFP_RECLAIMABLE", "__GFP_ZEROTAGS",
	"__GFP_SKIP_ZERO", "__GFP_SKIP_KASAN", "__GFP_NOLOCKDEP", "__GFP_NO_OBJ_EXT",
}

// Names renders mask as the kernel does: combined names first, then the
// single flags left, then any unknown bits in hex; "none" for 0.
func (f *Flags) Names(mask uint32) string {
	if mask == 0 {
		return "none"
	}
	var out []string
	left := mask
	for _, c := range f.composites() {
		if c.mask != 0 && left&c.mask == c.mask {
			out = append(out, c.name)
			left &^= c.mask
		}
	}
	reclaim := f.or("__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM")
	for _, n := range singleOrder {
		b := f.bits[n]
		if n == "__GFP_RECLAIM" {
			b = reclaim
		}
		if b != 0 && left&b == b {
			out = append(out, n)
			left &^= b
		}
	}
	if left != 0 {
		out = append(out, fmt.Sprintf("%#x", left))
	}
	return strings.Join(out, "|")
}
