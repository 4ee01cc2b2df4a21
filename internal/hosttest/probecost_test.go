// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// BenchmarkMmPageAllocProbe measures what the tracepoint tier's page
// allocation failure hook costs every allocation: the kernel's own BPF
// run statistics (run_time_ns / run_cnt) while a workload faults in
// pages, for oomtrace's program and for an empty program on the same
// tracepoint (the floor: what any program there costs). Wall-clock page
// fault timing cannot see it here (a fault costs ~10 µs on this VM).
//
//	go test -run '^$' -bench MmPageAllocProbe -count 5 ./internal/hosttest/
func BenchmarkMmPageAllocProbe(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root to load BPF programs and read their run statistics")
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("skipped: BPF run statistics (kernel.bpf_stats_enabled): %v", err)
	}
	defer stats.Close()

	// Each program alone on the tracepoint, the same workload each time.
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "mm_page_alloc", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		b.Fatalf("load empty program: %v", err)
	}
	defer empty.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: empty, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		b.Fatalf("attach empty program: %v", err)
	}
	b.ResetTimer()
	floor := measure(b, empty)
	l.Close()

	p, err := probe.Load(probe.Config{Tier: probe.TierTracepoint, AllocFailures: true, AllocMinOrder: 1})
	if err != nil {
		b.Skipf("skipped: %v", err)
	}
	defer p.Close()
	prog := p.Programs()[bpf.OomtraceProgTpMmPageAlloc]
	if prog == nil {
		b.Skip("skipped: tp_btf/mm_page_alloc not attached on this kernel")
	}
	ours := measure(b, prog)
	b.StopTimer()

	b.ReportMetric(ours.perCall(), "ns/alloc-probe")
	b.ReportMetric(floor.perCall(), "ns/alloc-empty")
	b.ReportMetric(ours.perCall()-floor.perCall(), "ns/alloc-extra")
	b.ReportMetric(float64(ours.count)/ours.wall.Seconds(), "allocs/s")
}

// measure runs the workload b.N times and returns prog's run statistics.
func measure(b *testing.B, prog *ebpf.Program) runStats {
	before := readStats(b, prog)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		faultPages(b, 256) // 1 MiB: 256 order-0 allocations
	}
	d := readStats(b, prog).sub(before)
	d.wall = time.Since(start)
	if d.count == 0 {
		b.Fatal("the workload made no page allocations the probe saw")
	}
	return d
}

type runStats struct {
	count uint64
	ns    time.Duration
	wall  time.Duration
}

func (a runStats) sub(b runStats) runStats {
	return runStats{count: a.count - b.count, ns: a.ns - b.ns}
}
func (a runStats) perCall() float64 {
	if a.count == 0 {
		return 0
	}
	return float64(a.ns.Nanoseconds()) / float64(a.count)
}

func readStats(b *testing.B, prog *ebpf.Program) runStats {
	st, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return runStats{count: st.RunCount, ns: st.Runtime}
}

// faultPages maps, touches and unmaps n pages: n page allocations.
func faultPages(b *testing.B, n int) {
	mem, err := unix.Mmap(-1, 0, n*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(mem); i += os.Getpagesize() {
		mem[i] = 1
	}
	unix.Munmap(mem)
}
