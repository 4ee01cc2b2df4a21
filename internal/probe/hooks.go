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

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/ksym"
)

type attachKind int

const (
	attachFentry attachKind = iota
	attachFexit
	attachKprobe
	attachKretprobe
	attachTPBTF
)

// program is one BPF program of a form and where it attaches.
type program struct {
	name   string // in the BPF object
	kind   attachKind
	target string // kernel function or tracepoint
}

// form is one way to attach a hook: a tier and the programs it takes.
type form struct {
	tier   Tier
	detail string
	progs  []program
	// usable says whether this kernel can take the form; nil means it can.
	usable func(*env) error
}

// hook is something oomtrace watches, with its forms, best first.
type hook struct {
	name     string
	required bool // without it oomtrace cannot do its job
	forms    []form
}

var hooks = []hook{
	{
		name:     "oom:mark_victim",
		required: true,
		forms: []form{
			{tier: TierTracepoint, detail: "tp_btf, full format (task, uid)",
				progs:  []program{{bpf.OomtraceProgMarkVictim, attachTPBTF, "mark_victim"}},
				usable: func(e *env) error { return e.markVictimFormatIs("full") }},
			{tier: TierTracepoint, detail: "tp_btf, pid-only format (kernels before the 6.9 change): victim read from oom_kill_process",
				progs:  []program{{bpf.OomtraceProgMarkVictimPid, attachTPBTF, "mark_victim"}},
				usable: func(e *env) error { return e.markVictimFormatIs("pid") }},
		},
	},
	{
		name: "oom_kill_process",
		forms: entryExitForms("oom_kill_process",
			bpf.OomtraceProgFentryOomKillProcess, bpf.OomtraceProgFexitOomKillProcess,
			bpf.OomtraceProgKprobeOomKillProcess, bpf.OomtraceProgKretprobeOomKillProcess),
	},
	{
		// Only the pid-only mark_victim needs it: to find each victim's task.
		name: "__oom_kill_process",
		forms: []form{
			{tier: TierFentry, detail: "fentry: the task of each victim, for the pid-only mark_victim", progs: []program{
				{bpf.OomtraceProgFentryOomKillOne, attachFentry, "__oom_kill_process"},
			}, usable: needPidFormat},
			{tier: TierKprobe, detail: "kprobe: the task of each victim, for the pid-only mark_victim", progs: []program{
				{bpf.OomtraceProgKprobeOomKillOne, attachKprobe, "__oom_kill_process"},
			}, usable: needPidFormat},
		},
	},
	{
		name: "mem_cgroup_out_of_memory",
		forms: entryExitForms("mem_cgroup_out_of_memory",
			bpf.OomtraceProgFentryMemcgOom, bpf.OomtraceProgFexitMemcgOom,
			bpf.OomtraceProgKprobeMemcgOom, bpf.OomtraceProgKretprobeMemcgOom),
	},
	{
		name: "page_alloc_failure",
		forms: []form{
			// warn_alloc is variadic: fentry cannot attach to it.
			{tier: TierKprobe, detail: "kprobe on warn_alloc (failure path only)", progs: []program{
				{bpf.OomtraceProgKprobeWarnAlloc, attachKprobe, "warn_alloc"},
			}},
			{tier: TierTracepoint, detail: "tp_btf kmem:mm_page_alloc, page == NULL (runs on every allocation)", progs: []program{
				{bpf.OomtraceProgTpMmPageAlloc, attachTPBTF, "mm_page_alloc"},
			}},
		},
	},
}

// entryExitForms are the two forms of a hook on a function's entry and
// return: fentry/fexit, else kprobe/kretprobe.
func entryExitForms(fn, fentry, fexit, kprobe, kretprobe string) []form {
	return []form{
		{tier: TierFentry, detail: "fentry/fexit", progs: []program{
			{fentry, attachFentry, fn}, {fexit, attachFexit, fn},
		}},
		{tier: TierKprobe, detail: "kprobe/kretprobe", progs: []program{
			{kprobe, attachKprobe, fn}, {kretprobe, attachKretprobe, fn},
		}},
	}
}

// errNotNeeded marks a hook this kernel does not need at all.
var errNotNeeded = errors.New("not needed on this kernel")

func needPidFormat(e *env) error {
	if e.markVictimFormatIs("pid") != nil {
		return fmt.Errorf("%w: mark_victim passes the victim's task", errNotNeeded)
	}
	return nil
}

// Choice is the form picked for a hook, or why none was.
type Choice struct {
	Hook   string `json:"hook"`
	Tier   Tier   `json:"-"`
	Detail string `json:"detail"`
	// Skipped says, for each better form passed over, why.
	Skipped []string `json:"skipped,omitempty"`
	// NotNeeded: the hook is not attached because this kernel does not
	// need it (not because it cannot be).
	NotNeeded bool `json:"-"`
	form      *form
}

// env is what the kernel offers, probed once per start.
type env struct {
	btf      *btf.Spec
	syms     *ksym.Table
	symsErr  error
	fentry   map[string]error // per function: can fentry attach?
	kprobe   map[string]error
	mvFormat string
	mvErr    error
}

func newEnv() *env {
	e := &env{fentry: map[string]error{}, kprobe: map[string]error{}}
	e.btf, _ = btf.LoadKernelSpec()
	e.syms, e.symsErr = ksym.Load()
	if e.btf != nil {
		e.mvFormat, e.mvErr = markVictimFormat(e.btf)
	} else {
		e.mvErr = ErrNoBTF
	}
	return e
}

func (e *env) markVictimFormatIs(want string) error {
	if e.mvErr != nil {
		return e.mvErr
	}
	if e.mvFormat != want {
		return fmt.Errorf("kernel has the %s format of mark_victim", e.mvFormat)
	}
	return nil
}

// usable says whether this kernel can attach every program of f.
func (e *env) usable(f *form) error {
	if f.usable != nil {
		if err := f.usable(e); err != nil {
			return err
		}
	}
	for _, p := range f.progs {
		var err error
		switch p.kind {
		case attachFentry, attachFexit:
			err = e.fentryWorks(p.target)
		case attachKprobe, attachKretprobe:
			_, err = e.kprobeSymbol(p.target)
		case attachTPBTF:
			err = e.tracepointExists(p.target)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *env) tracepointExists(tp string) error {
	if e.btf == nil {
		return ErrNoBTF
	}
	if _, err := e.btf.AnyTypeByName("btf_trace_" + tp); err != nil {
		return fmt.Errorf("tracepoint %s not in kernel BTF", tp)
	}
	return nil
}

// fentryWorks loads a trivial fentry program on fn: the kernel may have
// BTF for fn and still refuse trampolines (seen as EPERM before the
// verifier runs, on kernels built without them).
func (e *env) fentryWorks(fn string) error {
	if err, ok := e.fentry[fn]; ok {
		return err
	}
	err := func() error {
		if e.btf == nil {
			return ErrNoBTF
		}
		var f *btf.Func
		if err := e.btf.TypeByName(fn, &f); err != nil {
			return fmt.Errorf("%s not in kernel BTF (inlined, or not built in)", fn)
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
		if err != nil {
			return fmt.Errorf("attach fentry to %s: %w", fn, err)
		}
		return l.Close()
	}()
	e.fentry[fn] = err
	return err
}

// kprobeSymbol finds the symbol to probe for fn and checks kprobes work.
func (e *env) kprobeSymbol(fn string) (string, error) {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		if _, err2 := os.Stat("/sys/kernel/tracing/kprobe_events"); err2 != nil {
			return "", errors.New("no kprobes: kernel built without CONFIG_KPROBES")
		}
	}
	if e.syms == nil {
		return "", e.symsErr
	}
	sym, ok := e.syms.Find(fn)
	if !ok {
		return "", fmt.Errorf("%s not in /proc/kallsyms", fn)
	}
	return sym, nil
}

// choose picks a form per hook. forced, when set, is the tier every hook
// that has it must use; hooks without it use their best lower tier.
func choose(e *env, forced Tier) ([]Choice, error) {
	var out []Choice
	for _, h := range hooks {
		c := Choice{Hook: h.name, Tier: TierNone}
		var forcedWhy string // why the forced tier's form cannot be used
		hasForced := false
		for _, f := range h.forms {
			hasForced = hasForced || f.tier == forced
		}
		for i := range h.forms {
			f := &h.forms[i]
			if forced != TierNone && (hasForced && f.tier != forced || !hasForced && f.tier < forced) {
				c.Skipped = append(c.Skipped, fmt.Sprintf("%s: not the forced tier", f.tier))
				continue
			}
			err := e.usable(f)
			if errors.Is(err, errNotNeeded) {
				c.Detail, c.Skipped, c.NotNeeded = err.Error(), nil, true
				break
			}
			if err != nil {
				c.Skipped = append(c.Skipped, fmt.Sprintf("%s (%s): %v", f.tier, f.detail, err))
				if f.tier == forced {
					forcedWhy = err.Error()
				}
				continue
			}
			c.Tier, c.Detail, c.form = f.tier, f.detail, f
			break
		}
		if c.NotNeeded {
			out = append(out, c)
			continue
		}
		if c.form == nil {
			switch {
			case forced != TierNone && hasForced:
				return nil, fmt.Errorf("--tier=%s: %s cannot use it on this kernel: %s", forced, h.name, forcedWhy)
			case h.required:
				return nil, fmt.Errorf("cannot trace %s on this kernel: %s", h.name, joinSkipped(c.Skipped))
			}
			c.Detail = "not attached: " + joinSkipped(c.Skipped)
			c.Skipped = nil
		}
		out = append(out, c)
	}
	// The pid-only mark_victim finds victims through the kill path's hooks.
	if out[0].form != nil && out[0].form.usable != nil && e.markVictimFormatIs("pid") == nil && out[1].form == nil {
		err := fmt.Errorf("cannot trace OOM kills: this kernel's oom:mark_victim passes only a pid, and reading the victim then needs a hook on oom_kill_process (fentry or kprobe): %s", out[1].Detail)
		if forced != TierNone {
			err = fmt.Errorf("--tier=%s: %w", forced, err)
		}
		return nil, err
	}
	return out, nil
}

func joinSkipped(s []string) string {
	if len(s) == 0 {
		return "no form of this tier"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "; " + x
	}
	return out
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
