// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/oomtrace/oomtrace/internal/bpf"
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
	usable func(kernel) error
}

// hook is something oomtrace watches, with its forms, best first.
type hook struct {
	name     string
	required bool // without it oomtrace cannot do its job
	// needed says whether this kernel needs the hook at all; nil: it does.
	needed func(kernel) error
	forms  []form
}

var hooks = []hook{
	{
		name:     "oom:mark_victim",
		required: true,
		forms: []form{
			{tier: TierTracepoint, detail: "tp_btf, full format (task, uid)",
				progs:  []program{{bpf.OomtraceProgMarkVictim, attachTPBTF, "mark_victim"}},
				usable: func(k kernel) error { return k.markVictimFormatIs(markVictimFull) }},
			{tier: TierTracepoint, detail: "tp_btf, pid-only format (kernels before the 6.9 change): victim read from oom_kill_process",
				progs:  []program{{bpf.OomtraceProgMarkVictimPid, attachTPBTF, "mark_victim"}},
				usable: func(k kernel) error { return k.markVictimFormatIs(markVictimPid) }},
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
		needed: func(k kernel) error {
			if k.markVictimErr == nil && k.markVictim != markVictimPid {
				return errors.New("mark_victim passes the victim's task")
			}
			return nil
		},
		forms: []form{
			{tier: TierFentry, detail: "fentry: the task of each victim, for the pid-only mark_victim", progs: []program{
				{bpf.OomtraceProgFentryOomKillOne, attachFentry, "__oom_kill_process"},
			}},
			{tier: TierKprobe, detail: "kprobe: the task of each victim, for the pid-only mark_victim", progs: []program{
				{bpf.OomtraceProgKprobeOomKillOne, attachKprobe, "__oom_kill_process"},
			}},
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
	// Off: the hook is not attached because the configuration says so.
	Off  bool `json:"-"`
	form *form
}

// turnOff marks hook as not attached, for the reason the configuration
// gives, whatever tier it could have had.
func turnOff(choices []Choice, hook, why string) {
	for i := range choices {
		if choices[i].Hook == hook {
			choices[i] = Choice{Hook: hook, Tier: TierNone, Detail: "off: " + why, Off: true}
		}
	}
}

// targets lists what the hooks' programs attach to, by how each is
// probed: fentry functions, kprobe functions, tracepoints.
func targets() (fentry, kprobe, tracepoints []string) {
	seen := map[string]bool{}
	add := func(list *[]string, kind, target string) {
		if !seen[kind+target] {
			seen[kind+target] = true
			*list = append(*list, target)
		}
	}
	for _, h := range hooks {
		for _, f := range h.forms {
			for _, p := range f.progs {
				switch p.kind {
				case attachFentry, attachFexit:
					add(&fentry, "fentry:", p.target)
				case attachKprobe, attachKretprobe:
					add(&kprobe, "kprobe:", p.target)
				case attachTPBTF:
					add(&tracepoints, "tp:", p.target)
				}
			}
		}
	}
	return fentry, kprobe, tracepoints
}

// choose picks a form per hook from what kernel k offers; it touches
// nothing else. forced, when set, is the tier every hook that has it must
// use; hooks without it use their best lower tier. It fails, saying why,
// when OOM kills cannot be traced that way.
func choose(k kernel, forced Tier) ([]Choice, error) {
	var out []Choice
	for _, h := range hooks {
		c, err := chooseForm(k, h, forced)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := pidMarkVictimHasKillPath(k, out); err != nil {
		if forced != TierNone {
			err = fmt.Errorf("--tier=%s: %w", forced, err)
		}
		return nil, err
	}
	return out, nil
}

// chooseForm picks the best form of h that k allows and forced permits.
func chooseForm(k kernel, h hook, forced Tier) (Choice, error) {
	c := Choice{Hook: h.name, Tier: TierNone}
	if h.needed != nil {
		if why := h.needed(k); why != nil {
			c.Detail, c.NotNeeded = "not needed on this kernel: "+why.Error(), true
			return c, nil
		}
	}
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
		if err := k.usable(f); err != nil {
			c.Skipped = append(c.Skipped, fmt.Sprintf("%s (%s): %v", f.tier, f.detail, err))
			if f.tier == forced {
				forcedWhy = err.Error()
			}
			continue
		}
		c.Tier, c.Detail, c.form = f.tier, f.detail, f
		return c, nil
	}
	switch {
	case forced != TierNone && hasForced:
		return c, fmt.Errorf("--tier=%s: %s cannot use it on this kernel: %s", forced, h.name, forcedWhy)
	case h.required:
		return c, fmt.Errorf("cannot trace %s on this kernel: %s", h.name, strings.Join(c.Skipped, "; "))
	}
	c.Detail = "not attached: " + strings.Join(c.Skipped, "; ")
	c.Skipped = nil
	return c, nil
}

// pidMarkVictimHasKillPath: the pid-only mark_victim finds each victim
// through the hook on oom_kill_process; without it no kill can be read.
func pidMarkVictimHasKillPath(k kernel, choices []Choice) error {
	if k.markVictimFormatIs(markVictimPid) != nil {
		return nil
	}
	for _, c := range choices {
		if c.Hook == "oom_kill_process" && c.form == nil {
			return fmt.Errorf("cannot trace OOM kills: this kernel's oom:mark_victim passes only a pid, and reading the victim then needs a hook on oom_kill_process (fentry or kprobe): %s", c.Detail)
		}
	}
	return nil
}
