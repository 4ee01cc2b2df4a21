// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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

// HookSupport is the tier a hook would use on this kernel.
type HookSupport struct {
	Hook   string `json:"hook"`
	Tier   string `json:"tier"`
	Detail string `json:"detail"`
}

// Report is what `oomtrace check` prints.
type Report struct {
	Kernel     string             `json:"kernel"`
	BTF        Support            `json:"btf"`
	RingBuf    Support            `json:"ringbuf"`
	Tiers      map[string]Support `json:"tiers"`
	Tracefs    Support            `json:"tracefs"`
	Hooks      []HookSupport      `json:"hooks"`
	CanTrace   bool               `json:"can_trace_oom_kills"`
	Conclusion string             `json:"conclusion"`
}

// Check probes this kernel for what oomtrace needs. It loads and attaches
// the real programs for a moment, so it needs the same privileges as the
// agent; without them it says so.
func Check() Report {
	r := Report{Tiers: map[string]Support{}}
	_ = rlimit.RemoveMemlock() // only kernels before 5.11 need it; a failure shows below
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}

	spec, err := btf.LoadKernelSpec()
	if err != nil {
		r.BTF = missing(fmt.Errorf("%w (%v)", ErrNoBTF, err))
	} else {
		r.BTF = supported("/sys/kernel/btf/vmlinux")
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		r.RingBuf = missing(explainPerm(fmt.Errorf("BPF ring buffer (Linux 5.8+): %w", err)))
	} else {
		r.RingBuf = supported("")
	}
	r.Tiers[TierFentry.String()] = checkFentry()
	r.Tiers[TierKprobe.String()] = checkKprobe()
	r.Tiers[TierTracepoint.String()] = supported("tp_btf")
	r.Tracefs = checkTracefs()

	victim := HookSupport{Hook: "oom:mark_victim", Tier: TierNone.String()}
	switch {
	case spec == nil:
		victim.Detail = "needs kernel BTF"
	default:
		format, err := markVictimFormat(spec)
		if err != nil {
			victim.Detail = err.Error()
			break
		}
		if format != "full" {
			victim.Detail = "mark_victim(int pid): the pid-only format of kernels before the 6.9 change is not supported yet"
			break
		}
		if err := tryAttach(); err != nil {
			victim.Detail = err.Error()
			break
		}
		victim.Tier = TierTracepoint.String()
		victim.Detail = "tp_btf, full format (task, uid): loaded and attached"
	}
	r.Hooks = append(r.Hooks, victim)

	r.CanTrace = victim.Tier != TierNone.String() && r.RingBuf.OK
	if r.CanTrace {
		r.Conclusion = "OOM kills can be traced on this kernel"
	} else {
		r.Conclusion = "OOM kills cannot be traced on this kernel: see the lines marked no"
	}
	return r
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
		return "full", nil
	}
	return "pid", nil
}

// tryAttach loads and attaches the real programs, then removes them.
func tryAttach() error {
	p, err := Load(Config{RingBufSize: uint32(os.Getpagesize())})
	if err != nil {
		return err
	}
	return p.Close()
}

func checkFentry() Support {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry,
		AttachTo:   "oom_kill_process",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return missing(fmt.Errorf("load fentry program: %w (the kernel refuses trampolines here, or oomtrace lacks CAP_BPF/CAP_PERFMON)", err))
		}
		return missing(fmt.Errorf("load fentry program on oom_kill_process: %w", err))
	}
	prog.Close()
	return supported("BPF trampolines")
}

func checkKprobe() Support {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		return missing(errors.New("no kprobe PMU (/sys/bus/event_source/devices/kprobe): kernel built without CONFIG_KPROBES"))
	}
	return supported("kprobe PMU")
}

func checkTracefs() Support {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return supported(dir)
		}
	}
	return missing(errors.New("tracefs not mounted (mount -t tracefs tracefs /sys/kernel/tracing); only perf tracepoints need it, tp_btf does not"))
}
