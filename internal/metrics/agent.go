// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// Source is what a scrape reads from the running agent (*agent.Running).
type Source interface {
	Kernel() (probe.Counters, error)
	UserSpace() agent.UserSpaceLoss
	Programs() ([]agent.ProgramStat, error)
}

// agentCollector reads the agent's own counters when scraped: they live
// in BPF maps and the agent's atomics, so copying them on every change
// would cost the event path for nothing.
type agentCollector struct {
	source       atomic.Pointer[Source]
	bpfStatsFile string
	metricsDrops *atomic.Uint64
}

var (
	descLost = prometheus.NewDesc("oomtrace_events_lost_total",
		"Events lost, by stage: kernel_ringbuf (the BPF ring buffer was full), decode_queue (user space fell behind the ring buffer), output_queue (stdout stalled; metrics and Events still saw the event), metrics_queue (counted nowhere here).",
		[]string{"stage"}, nil)
	descKernelLostByEvent = prometheus.NewDesc("oomtrace_kernel_ringbuf_lost_total",
		"Records the BPF ring buffer had no room for (oomtrace_events_lost_total{stage=\"kernel_ringbuf\"}), by the event each would have been: an oom_kill lost here is a kill in no line, metric or Event.",
		[]string{"event"}, nil)
	descDecodeErrors = prometheus.NewDesc("oomtrace_record_decode_errors_total",
		"Ring buffer records that could not be decoded.", nil, nil)
	descWriteErrors = prometheus.NewDesc("oomtrace_event_write_errors_total",
		"Event lines whose write to stdout failed (the event was counted here).", nil, nil)
	descMapFull = prometheus.NewDesc("oomtrace_kernel_map_full_total",
		"Kernel-side bookkeeping that did not fit its BPF map: oom_kills_seen (a victim may be misreported), oom_ctx (records lack the OOM context).",
		[]string{"map"}, nil)
	descAllocUnreported = prometheus.NewDesc("oomtrace_alloc_failures_unreported_total",
		"Page allocation failures counted in the kernel but not reported, by reason: nowarn (__GFP_NOWARN, see --alloc-nowarn), below_min_order (see --alloc-min-order).",
		[]string{"reason"}, nil)
	descBPFStatsEnabled = prometheus.NewDesc("oomtrace_bpf_stats_enabled",
		"The sysctl kernel.bpf_stats_enabled: 1 while it has the kernel keep BPF run statistics, else 0.", nil, nil)
	descBPFRuns = prometheus.NewDesc("oomtrace_bpf_program_runs_total",
		"Times each of oomtrace's BPF programs ran while the kernel kept BPF run statistics.", []string{"program"}, nil)
	descBPFRunSeconds = prometheus.NewDesc("oomtrace_bpf_program_run_seconds_total",
		"Time spent in each of oomtrace's BPF programs while the kernel kept BPF run statistics.", []string{"program"}, nil)
)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLost, descKernelLostByEvent, descDecodeErrors, descWriteErrors, descMapFull, descAllocUnreported, descBPFStatsEnabled, descBPFRuns, descBPFRunSeconds} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descLost, c.metricsDrops.Load(), "metrics_queue")
	sp := c.source.Load()
	if sp == nil {
		// Before the probes are attached, and after they are closed,
		// there is nothing to read.
		return
	}
	src := *sp
	if k, err := src.Kernel(); errors.Is(err, agent.ErrStopped) {
		return
	} else if err == nil {
		counter(descLost, k.RingBufFull, "kernel_ringbuf")
		for _, kind := range []string{event.KindOOMKill, event.KindOOMVictimExiting, event.KindMemcgOOM, event.KindAllocFailure} {
			counter(descKernelLostByEvent, k.RingBufFullByEvent[kind], kind)
		}
		counter(descMapFull, k.SeenMapFull, "oom_kills_seen")
		counter(descMapFull, k.CtxMapFull, "oom_ctx")
		counter(descAllocUnreported, k.AllocNoWarn, "nowarn")
		counter(descAllocUnreported, k.AllocBelowOrder, "below_min_order")
	} else {
		ch <- prometheus.NewInvalidMetric(descLost, err)
	}
	u := src.UserSpace()
	counter(descLost, u.QueueDrops, "decode_queue")
	counter(descLost, u.OutputDrops, "output_queue")
	counter(descDecodeErrors, u.DecodeErrors)
	counter(descWriteErrors, u.WriteErrors)

	on, known := c.bpfStatsEnabled()
	if known {
		enabled := 0.0
		if on {
			enabled = 1
		}
		ch <- prometheus.MustNewConstMetric(descBPFStatsEnabled, prometheus.GaugeValue, enabled)
	}
	progs, _ := src.Programs() // a program that cannot be read is left out
	// The kernel counts only while statistics are on: by the sysctl, or
	// while some process holds them on (BPF_ENABLE_STATS, which the sysctl
	// does not show). Never on, every count is 0: no series, rather than
	// ones that look like idle programs.
	if !on && !slices.ContainsFunc(progs, func(p agent.ProgramStat) bool { return p.RunCount > 0 }) {
		return
	}
	for _, p := range progs {
		counter(descBPFRuns, p.RunCount, p.Name)
		ch <- prometheus.MustNewConstMetric(descBPFRunSeconds, prometheus.CounterValue, p.Runtime.Seconds(), p.Name)
	}
}

// bpfStatsEnabled reads kernel.bpf_stats_enabled; known is false when the
// file cannot be read (kernels before 5.8).
func (c *agentCollector) bpfStatsEnabled() (on, known bool) {
	b, err := os.ReadFile(c.bpfStatsFile)
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(string(b)) != "0", true
}
