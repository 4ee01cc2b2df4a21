// SPDX-License-Identifier: Apache-2.0

// Command bpflinks lists the kernel's BPF links, the attached hooks of
// every loaded BPF program, one JSON object a line:
//
//	{"link":12,"program":"tp_mm_page_alloc","kind":"tp_btf","target":"mm_page_alloc"}
//
// kind is tp_btf (or raw_tp), fentry, fexit, kprobe, kretprobe, or the
// kernel's link type for anything else. The benchmarks run it in VMs to
// show where the agent's programs sit (tests build it static, see
// vmtest.BuildStatic); it needs root.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Hook is one line of the output.
type Hook struct {
	Link    uint32 `json:"link"`
	Program string `json:"program"`
	Kind    string `json:"kind"`
	Target  string `json:"target,omitempty"`
}

func main() {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bpflinks: kernel BTF: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bpflinks: link %d: %v\n", it.ID, err)
			os.Exit(1)
		}
		name, typ := program(info.Program)
		h := describe(info, kernel)
		h.Link, h.Program = uint32(it.ID), name
		if h.Kind == "tp_btf" && typ == ebpf.RawTracepoint {
			h.Kind = "raw_tp"
		}
		enc.Encode(h)
	}
	if err := it.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "bpflinks: %v\n", err)
		os.Exit(1)
	}
}

// describe says what kind of hook a link is and where it sits.
func describe(info *link.Info, kernel *btf.Spec) Hook {
	h := Hook{Kind: fmt.Sprintf("link type %d", info.Type)}
	switch {
	case info.RawTracepoint() != nil:
		h.Kind, h.Target = "tp_btf", info.RawTracepoint().Name
	case info.Tracing() != nil:
		tr := info.Tracing()
		h.Kind = strings.ToLower(strings.TrimPrefix(tr.AttachType.String(), "BPF_TRACE_"))
		if typ, err := kernel.TypeByID(btf.TypeID(tr.TargetBtfId)); err == nil {
			h.Target = typ.TypeName()
		}
	case info.PerfEvent() != nil && info.PerfEvent().Kprobe() != nil:
		h.Kind, h.Target = "kprobe", info.PerfEvent().Kprobe().Function
		if info.PerfEvent().Type == link.PerfEventKretprobe {
			h.Kind = "kretprobe"
		}
	}
	return h
}

// program names a program and gives its type.
func program(id ebpf.ProgramID) (string, ebpf.ProgramType) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return fmt.Sprintf("id %d", id), ebpf.UnspecifiedProgram
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return fmt.Sprintf("id %d", id), ebpf.UnspecifiedProgram
	}
	return info.Name, info.Type
}
