// SPDX-License-Identifier: Apache-2.0

package ksym

import (
	"strings"
	"testing"
)

const sample = `ffffffff81000000 T _stext
ffffffff81234500 t oom_kill_process
ffffffff81234900 t oom_kill_process.cold
ffffffff81235000 T out_of_memory
ffffffff81300000 D some_data
ffffffff81400000 t warn_alloc.isra.0
ffffffffc0100000 t nf_conntrack_init_net	[nf_conntrack]
`

func TestNameAndFind(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[uint64]string{
		0xffffffff81234500: "oom_kill_process+0x0",
		0xffffffff812345a2: "oom_kill_process+0xa2",
		0xffffffff81235010: "out_of_memory+0x10",
		0xffffffffc0100101: "nf_conntrack_init_net+0x101",
		0x1000:             "0x1000",
		0xffffffffc0200000: "0xffffffffc0200000", // past the last symbol: JIT code
	} {
		if got := tab.Name(addr); got != want {
			t.Errorf("Name(%#x) = %q, want %q", addr, got, want)
		}
	}
	for fn, want := range map[string]string{"oom_kill_process": "oom_kill_process", "warn_alloc": "warn_alloc.isra.0", "missing": ""} {
		if got, _ := tab.Find(fn); got != want {
			t.Errorf("Find(%q) = %q, want %q", fn, got, want)
		}
	}
}

func TestParseHiddenAddresses(t *testing.T) {
	if _, err := Parse(strings.NewReader("0000000000000000 T _stext\n0000000000000000 t oom_kill_process\n")); err == nil || !strings.Contains(err.Error(), "kptr_restrict") {
		t.Errorf("got %v, want an error naming kptr_restrict", err)
	}
}

func TestStackDropsProbeFrames(t *testing.T) {
	tab, err := Parse(strings.NewReader(`ffffffff81000000 T bpf_trace_run1
ffffffff81001000 T mark_oom_victim
ffffffff81002000 T __oom_kill_process
ffffffff81003000 T oom_kill_process
`))
	if err != nil {
		t.Fatal(err)
	}
	got := tab.Stack([]uint64{0xffffffffc0300040, 0xffffffff81000032, 0xffffffff81001084, 0xffffffff81002121, 0xffffffff8100306f})
	want := []string{"mark_oom_victim+0x84", "__oom_kill_process+0x121", "oom_kill_process+0x6f"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Stack = %v, want %v", got, want)
	}
}

// A second BPF program on the same tracepoint (a trace session, another
// tool) makes the kernel call the programs through the tracepoint's
// iterator: its frame is the dispatch's too.
func TestStackDropsTracepointIterator(t *testing.T) {
	tab, err := Parse(strings.NewReader(`ffffffff81000000 T bpf_trace_run1
ffffffff81000800 T __bpf_trace_mark_victim
ffffffff81000c00 T __traceiter_mark_victim
ffffffff81001000 T mark_oom_victim
ffffffff81002000 T __oom_kill_process
`))
	if err != nil {
		t.Fatal(err)
	}
	got := tab.Stack([]uint64{0xffffffffc0300040, 0xffffffff81000032, 0xffffffff81000810, 0xffffffff81000c20, 0xffffffff81001084, 0xffffffff81002121})
	want := []string{"mark_oom_victim+0x84", "__oom_kill_process+0x121"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Stack = %v, want %v", got, want)
	}
}
