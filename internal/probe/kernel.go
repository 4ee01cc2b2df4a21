// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/ksym"
)

// The two prototypes of the oom:mark_victim tracepoint.
const (
	markVictimFull = "full" // (task, uid): 6.9, and stable kernels that took the change
	markVictimPid  = "pid"  // (int pid): before it
)

// kernel is what a kernel offers oomtrace's hooks, as plain facts: probed
// once at start for the running kernel (probeKernel), or written down for
// another one (the chooser's tests). The tier chooser decides on it alone.
type kernel struct {
	// btfErr is nil when the kernel has BTF, else why not.
	btfErr error
	// markVictim is markVictimFull or markVictimPid; markVictimErr says
	// why it is not known.
	markVictim    string
	markVictimErr error
	// tracepoints: per tracepoint a program attaches to, nil when tp_btf
	// can attach there, else why not.
	tracepoints map[string]error
	// fentry: per function, nil when a trivial fentry program loaded and
	// attached there, else why not.
	fentry map[string]error
	// kprobes is nil when the kernel has kprobes, else why not.
	kprobes error
	// symbols: per function, the kallsyms symbol a kprobe attaches to (a
	// compiler clone such as oom_kill_process.isra.0 where only that
	// exists); absent when kallsyms lacks it. symbolsErr: kallsyms is
	// unreadable.
	symbols    map[string]string
	symbolsErr error
}

func (k kernel) markVictimFormatIs(want string) error {
	if k.markVictimErr != nil {
		return k.markVictimErr
	}
	if k.markVictim != want {
		return fmt.Errorf("kernel has the %s format of mark_victim", k.markVictim)
	}
	return nil
}

func (k kernel) tracepoint(tp string) error { return k.answer(k.tracepoints, tp, "tracepoint") }

func (k kernel) fentryOn(fn string) error { return k.answer(k.fentry, fn, "fentry on") }

// answer is what probing found for target (all of it needs BTF).
func (k kernel) answer(found map[string]error, target, what string) error {
	if k.btfErr != nil {
		return k.btfErr
	}
	err, ok := found[target]
	if !ok {
		return fmt.Errorf("%s %s not probed", what, target)
	}
	return err
}

// kprobeSymbol is the symbol to probe for fn, or why fn cannot be probed.
func (k kernel) kprobeSymbol(fn string) (string, error) {
	if k.kprobes != nil {
		return "", k.kprobes
	}
	if k.symbolsErr != nil {
		return "", k.symbolsErr
	}
	sym, ok := k.symbols[fn]
	if !ok {
		return "", fmt.Errorf("%s not in /proc/kallsyms", fn)
	}
	return sym, nil
}

// usable says whether this kernel can attach every program of f.
func (k kernel) usable(f *form) error {
	if f.usable != nil {
		if err := f.usable(k); err != nil {
			return err
		}
	}
	for _, p := range f.progs {
		var err error
		switch p.kind {
		case attachFentry, attachFexit:
			err = k.fentryOn(p.target)
		case attachKprobe, attachKretprobe:
			_, err = k.kprobeSymbol(p.target)
		case attachTPBTF:
			err = k.tracepoint(p.target)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// env is the running kernel: what it offers, and what was read to find
// out (BTF, kallsyms), which loading needs too.
type env struct {
	kernel
	btf  *btf.Spec
	syms *ksym.Table
}

// probeKernel finds out what the running kernel offers for every target
// of every hook. Fentry is tried for real (a trivial program loaded and
// attached): a kernel may have BTF for a function and still refuse
// trampolines.
func probeKernel() *env {
	e := &env{kernel: kernel{
		tracepoints: map[string]error{}, fentry: map[string]error{}, symbols: map[string]string{},
	}}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		e.btfErr = fmt.Errorf("%w (%v)", ErrNoBTF, err)
	}
	e.btf = spec
	if spec != nil {
		e.markVictim, e.markVictimErr = markVictimFormat(spec)
	} else {
		e.markVictimErr = e.btfErr
	}
	e.syms, e.symbolsErr = ksym.Load()
	e.kprobes = kprobesWork()

	fentry, kprobe, tracepoints := targets()
	for _, tp := range tracepoints {
		e.tracepoints[tp] = tracepointInBTF(spec, tp)
	}
	for _, fn := range fentry {
		e.fentry[fn] = fentryWorks(spec, fn)
	}
	if e.syms != nil {
		for _, fn := range kprobe {
			if sym, ok := e.syms.Find(fn); ok {
				e.symbols[fn] = sym
			}
		}
	}
	return e
}

// markVictimFormat tells the tracepoint's two prototypes apart from BTF.
func markVictimFormat(spec *btf.Spec) (string, error) {
	typ, err := spec.AnyTypeByName("btf_trace_mark_victim")
	if err != nil {
		return "", fmt.Errorf("tracepoint oom:mark_victim not in kernel BTF: %w", err)
	}
	proto, ok := btf.UnderlyingType(typ).(*btf.Pointer)
	if !ok {
		return "", fmt.Errorf("btf_trace_mark_victim is %s, want a function pointer", typ)
	}
	fn, ok := proto.Target.(*btf.FuncProto)
	if !ok || len(fn.Params) < 2 {
		return "", fmt.Errorf("btf_trace_mark_victim has an unexpected prototype")
	}
	// Params[0] is the context; then either (int pid) or (task, uid).
	if _, isPtr := btf.UnderlyingType(fn.Params[1].Type).(*btf.Pointer); isPtr {
		return markVictimFull, nil
	}
	return markVictimPid, nil
}

func tracepointInBTF(spec *btf.Spec, tp string) error {
	if spec == nil {
		return ErrNoBTF
	}
	if _, err := spec.AnyTypeByName("btf_trace_" + tp); err != nil {
		return fmt.Errorf("tracepoint %s not in kernel BTF", tp)
	}
	return nil
}

// fentryWorks loads a trivial fentry program on fn and attaches it: seen
// refused with EPERM before the verifier runs, on kernels built without
// BPF trampolines.
func fentryWorks(spec *btf.Spec, fn string) error {
	if spec == nil {
		return ErrNoBTF
	}
	var f *btf.Func
	if err := spec.TypeByName(fn, &f); err != nil {
		// Seen on Debian's arm64 5.10: kallsyms has oom_kill_process (a
		// kprobe attaches), its BTF does not.
		return fmt.Errorf("%s not in kernel BTF, which fentry needs (inlined, not built in, or left out of the BTF when the kernel was built)", fn)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: fn, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("kernel refuses fentry programs (EPERM before verification: no BPF trampoline support)")
		}
		return fmt.Errorf("load fentry program on %s: %w", fn, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Seen on Debian's arm64 6.1: the program loads, the attach is
		// refused (ENOTSUPP): no BPF trampolines on this architecture yet.
		return fmt.Errorf("kernel loads fentry programs but cannot attach them (no BPF trampolines for this architecture in this kernel): attach to %s: %w", fn, err)
	}
	if err != nil {
		return fmt.Errorf("attach fentry to %s: %w", fn, err)
	}
	return l.Close()
}

// kprobesWork says whether the kernel has kprobes (the kprobe PMU, which
// every kernel oomtrace supports has when built with them).
func kprobesWork() error {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		return errors.New("no kprobes: kernel built without CONFIG_KPROBES")
	}
	return nil
}

// attach attaches one loaded program.
func (e *env) attach(p program, prog *ebpf.Program) (link.Link, error) {
	switch p.kind {
	case attachFentry, attachFexit:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case attachTPBTF:
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case attachKprobe, attachKretprobe:
		sym, err := e.kprobeSymbol(p.target)
		if err != nil {
			return nil, err
		}
		if p.kind == attachKretprobe {
			return link.Kretprobe(sym, prog, nil)
		}
		return link.Kprobe(sym, prog, nil)
	}
	return nil, fmt.Errorf("unknown attach kind %d", p.kind)
}
