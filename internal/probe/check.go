// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Support says whether a kernel feature works here, and if not, why.
type Support struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func supported(detail string) Support { return Support{OK: true, Detail: detail} }
func missing(err error) Support       { return Support{Detail: err.Error()} }

// HookReport is the tier a hook uses on this kernel, and why.
type HookReport struct {
	Hook    string   `json:"hook"`
	Tier    string   `json:"tier"`
	Detail  string   `json:"detail"`
	Skipped []string `json:"skipped,omitempty"`
}

// Report is what `oomtrace check` prints.
type Report struct {
	Kernel     string             `json:"kernel"`
	BTF        Support            `json:"btf"`
	RingBuf    Support            `json:"ringbuf"`
	Tiers      map[string]Support `json:"tiers"`
	Hooks      []HookReport       `json:"hooks"`
	CanTrace   bool               `json:"can_trace_oom_kills"`
	Conclusion string             `json:"conclusion"`
}

// cannotTrace begins check's conclusion when Load fails; the reason follows.
const cannotTrace = "OOM kills cannot be traced on this kernel: "

// Check probes this kernel for what oomtrace needs, with the tier forced
// as the agent would be. It loads and attaches the real programs for a
// moment, so it needs the agent's privileges; without them it says so.
func Check(forced Tier) Report {
	r := Report{Tiers: map[string]Support{}}
	_ = rlimit.RemoveMemlock() // only kernels before 5.11 need it; a failure shows below
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if spec, err := btf.LoadKernelSpec(); err != nil || spec == nil {
		r.BTF = missing(fmt.Errorf("%w (%v)", ErrNoBTF, err))
	} else {
		r.BTF = supported("/sys/kernel/btf/vmlinux")
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		r.RingBuf = missing(explainPerm(fmt.Errorf("BPF ring buffer (Linux 5.8+): %w", err)))
	} else {
		r.RingBuf = supported("")
	}
	e := probeKernel()
	if err := e.fentryOn("oom_kill_process"); err != nil {
		r.Tiers[TierFentry.String()] = missing(err)
	} else {
		r.Tiers[TierFentry.String()] = supported("BPF trampolines")
	}
	if _, err := e.kprobeSymbol("oom_kill_process"); err != nil {
		r.Tiers[TierKprobe.String()] = missing(err)
	} else {
		r.Tiers[TierKprobe.String()] = supported("kprobe PMU")
	}
	if err := e.tracepoint("mark_victim"); err != nil {
		r.Tiers[TierTracepoint.String()] = missing(err)
	} else {
		r.Tiers[TierTracepoint.String()] = supported("tp_btf")
	}

	p, err := Load(Config{RingBufSize: uint32(os.Getpagesize()), Tier: forced, AllocFailures: true, AllocMinOrder: 1})
	if err != nil {
		r.Conclusion = cannotTrace + err.Error()
		if choices, cerr := choose(e.kernel, forced); cerr == nil {
			r.Hooks = reports(choices)
		}
		return r
	}
	r.Hooks = reports(p.Choices)
	p.Close()
	r.CanTrace = r.RingBuf.OK
	r.Conclusion = "OOM kills can be traced on this kernel"
	return r
}

func reports(choices []Choice) []HookReport {
	var out []HookReport
	for _, c := range choices {
		out = append(out, HookReport{Hook: c.Hook, Tier: c.Tier.String(), Detail: c.Detail, Skipped: c.Skipped})
	}
	return out
}
