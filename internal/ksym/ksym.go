// SPDX-License-Identifier: Apache-2.0

// Package ksym reads the kernel's symbol table (/proc/kallsyms) to name
// kernel stack frames ("nf_conntrack_init_net+0x101") and to find the
// symbol a kprobe should attach to.
package ksym

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Table is the kernel's text symbols, sorted by address. The agent keeps
// it for its whole life (100,000 symbols and more), so the names are one
// string, cut at ends, rather than a string each: about half the memory,
// and nothing for the garbage collector to walk.
type Table struct {
	addrs []uint64
	ends  []uint32 // names[i] is blob[ends[i-1]:ends[i]]
	blob  string
}

// Load reads /proc/kallsyms. Without privileges the kernel shows every
// address as 0: that is an error here, since nothing could be named.
func Load() (*Table, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads kallsyms-formatted text: "address type name [module]".
func Parse(r io.Reader) (*Table, error) {
	type sym struct {
		addr       uint64
		start, end uint32 // the name in names
	}
	var syms []sym
	var names []byte
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// Fields of the line's bytes, not of a string: no allocation per
		// line.
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 3 || len(fields[1]) != 1 {
			continue
		}
		switch fields[1][0] {
		case 't', 'T', 'w', 'W':
		default:
			continue // data, not code
		}
		addr, err := strconv.ParseUint(string(fields[0]), 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		start := uint32(len(names))
		names = append(names, fields[2]...)
		syms = append(syms, sym{addr, start, uint32(len(names))})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("read kernel symbols: no addresses (kernel.kptr_restrict hides them without CAP_SYSLOG)")
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	t := &Table{addrs: make([]uint64, len(syms)), ends: make([]uint32, len(syms))}
	blob := make([]byte, 0, len(names))
	for i, s := range syms {
		blob = append(blob, names[s.start:s.end]...)
		t.addrs[i], t.ends[i] = s.addr, uint32(len(blob))
	}
	t.blob = string(blob)
	return t, nil
}

// name is the i-th symbol's name.
func (t *Table) name(i int) string {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.blob[start:t.ends[i]]
}

// maxOffset bounds how far past a symbol an address may be and still be
// named after it. Code the table does not list (BPF programs, modules
// loaded later) lies past the last symbol, and would otherwise be named
// after whatever symbol comes last.
const maxOffset = 1 << 16

// Name returns "symbol+0xoffset" for a kernel text address, or the address
// in hex when no symbol covers it.
func (t *Table) Name(addr uint64) string {
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr }) - 1
	if i < 0 || addr-t.addrs[i] > maxOffset {
		return fmt.Sprintf("0x%x", addr)
	}
	return fmt.Sprintf("%s+0x%x", t.name(i), addr-t.addrs[i])
}

// dispatchPrefixes name the kernel functions that run a BPF program: the
// frames above the traced code. __traceiter_ is there once a second
// program is attached to the same tracepoint.
var dispatchPrefixes = []string{
	"bpf_trace_run", "__bpf_trace_", "__traceiter_", "trace_call_bpf", "bpf_prog_", "bpf_trampoline_",
	"__bpf_prog_enter", "kprobe_perf_func", "kprobe_dispatcher", "kretprobe_dispatcher",
	"kprobe_ftrace_handler", "pre_handler_kretprobe", "aggr_pre_handler",
	"kprobe_int3_handler", "exc_int3", "asm_exc_int3", "perf_trace_run_bpf_submit",
}

// Stack names a stack captured by a BPF program, without the program's
// own frames: it starts at the traced function.
func (t *Table) Stack(addrs []uint64) []string {
	names := t.Names(addrs)
	cut := 0
	for i := 0; i < len(names) && i < 12; i++ {
		for _, p := range dispatchPrefixes {
			if strings.HasPrefix(names[i], p) {
				cut = i + 1
			}
		}
		if strings.HasPrefix(names[i], "0x") && cut == i {
			cut = i + 1 // the program itself, JIT code the table does not list
		}
	}
	return names[cut:]
}

// Names names every address of a stack.
func (t *Table) Names(addrs []uint64) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = t.Name(a)
	}
	return out
}

// Find returns the symbol to attach a kprobe to for function fn: fn itself,
// or, where the compiler cloned a static function, fn.isra.0 or the like.
func (t *Table) Find(fn string) (string, bool) {
	var clone string
	for i := range t.addrs {
		n := t.name(i)
		if n == fn {
			return n, true
		}
		if clone == "" && strings.HasPrefix(n, fn+".") && !strings.HasSuffix(n, ".cold") {
			clone = n
		}
	}
	return clone, clone != ""
}
