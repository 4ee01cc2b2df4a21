// SPDX-License-Identifier: Apache-2.0

// Package ksym reads the kernel's symbol table (/proc/kallsyms) to name
// kernel stack frames ("nf_conntrack_init_net+0x101") and to find the
// symbol a kprobe should attach to.
package ksym

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Table is the kernel's text symbols, sorted by address.
type Table struct {
	addrs []uint64
	names []string
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
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[1] {
		case "t", "T", "w", "W":
		default:
			continue // data, not code
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		syms = append(syms, sym{addr, fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("read kernel symbols: no addresses (kernel.kptr_restrict hides them without CAP_SYSLOG)")
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	t := &Table{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		t.addrs[i], t.names[i] = s.addr, s.name
	}
	return t, nil
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
	return fmt.Sprintf("%s+0x%x", t.names[i], addr-t.addrs[i])
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
	for _, n := range t.names {
		if n == fn {
			return n, true
		}
		if clone == "" && strings.HasPrefix(n, fn+".") && !strings.HasSuffix(n, ".cold") {
			clone = n
		}
	}
	return clone, clone != ""
}
