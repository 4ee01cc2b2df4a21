// SPDX-License-Identifier: Apache-2.0

package gfp

import (
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
