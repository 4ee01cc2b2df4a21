// SPDX-License-Identifier: Apache-2.0

// Package metrics counts the agent's events for Prometheus: OOM kills by
// pod and container, memcg OOMs, allocation failures, what was lost on
// the way and where, and the BPF programs' own cost. docs/metrics.md
// lists every metric.
//
// Counts are taken from the events themselves, one per oom_kill line, so
// a pod's oomtrace_oom_kills_total is the number of processes the kernel
// killed in it while the agent ran. The label names namespace, pod and
// container are the ones cAdvisor and kube-state-metrics use, so the
// series join with theirs.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/gfp"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/version"
)

// DefaultSeriesTTL is how long a pod's series stay after its last event.
// A deleted pod has no more events, so its series go a day later; a day
// is longer than any alert rule's window, so a rule never sees a series
// of a live pod vanish and start again within its window.
const DefaultSeriesTTL = 24 * time.Hour

// DefaultQueueSize bounds the events observed but not yet counted.
const DefaultQueueSize = 1024

// Options are the settings of New.
type Options struct {
	// SeriesTTL: series with a pod's (or a host process's) labels are
	// dropped once they had no event for this long; 0 keeps them.
	SeriesTTL time.Duration
	// QueueSize bounds the events waiting to be counted (0: the default).
	QueueSize int

	// For tests: the clock, and the file that says whether the kernel
	// keeps BPF run statistics.
	now          func() time.Time
	bpfStatsFile string
}

// Metrics is the agent's Prometheus registry and what feeds it: an
// agent.Sink (Observe) and, once the agent runs, a Source read at scrape
// time.
type Metrics struct {
	reg   *prometheus.Registry
	queue chan item
	stop  chan struct{}
	done  chan struct{}
	drops atomic.Uint64 // events not counted: the queue was full

	ttl time.Duration
	now func() time.Time

	events       *prometheus.CounterVec
	oomKills     *prometheus.CounterVec
	nonInit      *prometheus.CounterVec
	memcgOOMs    *prometheus.CounterVec
	allocs       *prometheus.CounterVec
	enrichFails  *prometheus.CounterVec
	expiredTotal prometheus.Counter

	// series is every series with pod labels, for expiry; only the
	// counting goroutine touches it.
	series map[seriesKey]*podSeries

	agentState *agentCollector
}

// item is one entry of the queue: an event to count, or (for tests and
// Close) a request to expire series and say when all before it is done.
type item struct {
	e     *event.Event
	sweep bool
	done  chan struct{}
}

type seriesKey struct {
	vec    *prometheus.CounterVec
	values string // the label values joined
}

type podSeries struct {
	values []string
	last   time.Time
}

// Label names shared with cAdvisor and kube-state-metrics.
var podLabels = []string{"namespace", "pod", "container"}

// New makes the registry and starts the goroutine that counts observed
// events; Close stops it.
func New(o Options) *Metrics {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.bpfStatsFile == "" {
		o.bpfStatsFile = "/proc/sys/kernel/bpf_stats_enabled"
	}
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		queue:  make(chan item, o.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		ttl:    o.SeriesTTL,
		now:    o.now,
		series: map[seriesKey]*podSeries{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_events_total",
			Help: "Events reported, by kind (oom_kill, oom_victim_exiting, memcg_oom, alloc_failure, alloc_failures_folded).",
		}, []string{"event"}),
		oomKills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_oom_kills_total",
			Help: "Processes OOM-killed, by pod and container, the constraint that ran out and the first diagnosis code; one per oom_kill event, group kill members included.",
		}, slices.Concat(podLabels, []string{"constraint", "diagnosis"})),
		nonInit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_oom_kills_non_init_total",
			Help: "OOM kills of a container process that is not its PID 1: the container keeps running and Kubernetes reports no OOMKilled.",
		}, podLabels),
		memcgOOMs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_memcg_ooms_total",
			Help: "Memory cgroup OOMs, by the pod and container of the cgroup whose limit fired, and whether the OOM killer found a victim.",
		}, slices.Concat(podLabels, []string{"victim_found"})),
		allocs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_alloc_failures_total",
			Help: "Page allocation failures reported, by order and the highest zone the allocation allowed: one per alloc_failure line, and the count of each alloc_failures_folded line.",
		}, []string{"order", "zone"}),
		enrichFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomtrace_enrichment_failures_total",
			Help: "Events reported without part of what user space adds: names (k8s.lookup_error set) or memory_stat (memcg.stat_error set).",
		}, []string{"what"}),
		expiredTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oomtrace_metrics_series_expired_total",
			Help: "Series with pod labels dropped after --metrics-series-ttl without an event.",
		}),
	}
	m.agentState = &agentCollector{bpfStatsFile: o.bpfStatsFile, metricsDrops: &m.drops}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "oomtrace_build_info",
		Help: "Always 1; the version label says which oomtrace runs.",
	}, []string{"version"})
	info.WithLabelValues(version.Version).Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, m.events, m.oomKills, m.nonInit, m.memcgOOMs, m.allocs, m.enrichFails, m.expiredTotal,
		m.agentState,
	)
	// Series that exist from the start, so rate() and increase() see a
	// first rise from zero.
	for _, w := range []string{"names", "memory_stat"} {
		m.enrichFails.WithLabelValues(w)
	}
	for _, k := range []string{event.KindOOMKill, event.KindOOMVictimExiting, event.KindMemcgOOM, event.KindAllocFailure, event.KindAllocFailuresFolded} {
		m.events.WithLabelValues(k)
	}
	go m.run()
	return m
}

// Handler serves the exposition (Prometheus text or OpenMetrics, as the
// scraper asks).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// Register adds the collectors of other parts of the agent (the
// Kubernetes Event recorder's totals) to the exposition.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// SetSource makes scrapes read the agent's loss counters and BPF program
// statistics from s (agent.Config.OnRunning passes an *agent.Running).
func (m *Metrics) SetSource(s Source) { m.agentState.source.Store(&s) }

// Observe queues e to be counted; it never waits. An event that finds
// the queue full is counted in oomtrace_events_lost_total{stage="metrics_queue"}.
// It implements agent.Sink.
func (m *Metrics) Observe(e *event.Event) {
	select {
	case m.queue <- item{e: e}:
	default:
		m.drops.Add(1)
	}
}

// Close counts what is queued and stops the counting goroutine.
func (m *Metrics) Close() {
	m.flush()
	close(m.stop)
	<-m.done
}

// flush returns once every event observed before it is counted.
func (m *Metrics) flush() {
	done := make(chan struct{})
	m.queue <- item{done: done}
	<-done
}

// expireNow runs the expiry sweep in the counting goroutine and waits for it.
func (m *Metrics) expireNow() {
	done := make(chan struct{})
	m.queue <- item{sweep: true, done: done}
	<-done
}

func (m *Metrics) run() {
	defer close(m.done)
	var sweep <-chan time.Time
	if m.ttl > 0 {
		t := time.NewTicker(min(max(m.ttl/10, time.Second), 5*time.Minute))
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case it := <-m.queue:
			if it.e != nil {
				m.count(it.e)
			}
			if it.sweep {
				m.expire()
			}
			if it.done != nil {
				close(it.done)
			}
		case <-sweep:
			m.expire()
		case <-m.stop:
			return
		}
	}
}

// count adds one event to every metric it belongs to.
func (m *Metrics) count(e *event.Event) {
	m.events.WithLabelValues(labelValue(e.Event)).Inc()
	ns, pod, container := names(e)
	switch e.Event {
	case event.KindOOMKill:
		m.inc(m.oomKills, ns, pod, container, e.Constraint, firstCode(e))
		if hasCode(e, diagnose.NonInitVictim) {
			m.inc(m.nonInit, ns, pod, container)
		}
	case event.KindMemcgOOM:
		found := "unknown"
		if e.VictimFound != nil {
			found = strconv.FormatBool(*e.VictimFound)
		}
		m.inc(m.memcgOOMs, ns, pod, container, found)
	case event.KindAllocFailure:
		if a := e.Alloc; a != nil {
			m.allocs.WithLabelValues(strconv.FormatUint(uint64(a.Order), 10), zoneOf(a.GFPMask)).Inc()
		}
	case event.KindAllocFailuresFolded:
		if a, f := e.Alloc, e.Folded; a != nil && f != nil {
			m.allocs.WithLabelValues(strconv.FormatUint(uint64(a.Order), 10), zoneOf(a.GFPMask)).Add(float64(f.Count))
		}
	}
	if e.K8s != nil && e.K8s.LookupError != "" {
		m.enrichFails.WithLabelValues("names").Inc()
	}
	if e.Memcg != nil && e.Memcg.StatError != "" {
		m.enrichFails.WithLabelValues("memory_stat").Inc()
	}
}

// inc increments a series with pod labels and notes when, for expiry.
func (m *Metrics) inc(vec *prometheus.CounterVec, values ...string) {
	for i, v := range values {
		values[i] = labelValue(v)
	}
	vec.WithLabelValues(values...).Inc()
	if m.ttl <= 0 {
		return
	}
	key := seriesKey{vec: vec, values: strings.Join(values, "\xff")}
	s, ok := m.series[key]
	if !ok {
		s = &podSeries{values: values}
		m.series[key] = s
	}
	s.last = m.now()
}

// expire drops the series that had no event for the TTL.
func (m *Metrics) expire() {
	if m.ttl <= 0 {
		return
	}
	cutoff := m.now().Add(-m.ttl)
	for key, s := range m.series {
		if s.last.After(cutoff) {
			continue
		}
		key.vec.DeleteLabelValues(s.values...)
		delete(m.series, key)
		m.expiredTotal.Inc()
	}
}

// labelValue is a label value from text others may choose: client_golang
// panics on one that is not UTF-8, and writes control characters raw
// for whoever reads /metrics on a terminal. Names Kubernetes allows pass
// unchanged; anything else gets escapes (safetext.Escape).
func labelValue(s string) string { return safetext.Escape(s) }

// names are the event's pod labels; empty for a process outside any pod,
// or a pod no source could name (k8s.lookup_error says why).
func names(e *event.Event) (namespace, pod, container string) {
	if e.K8s == nil {
		return "", "", ""
	}
	return e.K8s.Namespace, e.K8s.Pod, e.K8s.Container
}

// firstCode is the most telling diagnosis, "none" when there is none.
func firstCode(e *event.Event) string {
	if len(e.Diagnosis) == 0 {
		return "none"
	}
	return e.Diagnosis[0].Code
}

func hasCode(e *event.Event, code string) bool {
	for _, f := range e.Diagnosis {
		if f.Code == code {
			return true
		}
	}
	return false
}

// The zone modifiers are the lowest four gfp bits on every kernel, so the
// default table names them right whatever the running kernel.
var (
	gfpDMA     = gfp.Default().Bit("__GFP_DMA")
	gfpHighmem = gfp.Default().Bit("__GFP_HIGHMEM")
	gfpDMA32   = gfp.Default().Bit("__GFP_DMA32")
	gfpMovable = gfp.Default().Bit("__GFP_MOVABLE")
)

// zoneOf is the highest zone an allocation with this mask may use, as the
// kernel's gfp_zone() picks it (on 64-bit machines, where HIGHMEM alone is
// Normal). The hooks do not see which zone failed; the allocator falls
// back from this zone to the lower ones.
func zoneOf(mask uint32) string {
	switch {
	case mask&gfpDMA != 0:
		return "DMA"
	case mask&gfpDMA32 != 0:
		return "DMA32"
	case mask&gfpMovable != 0 && mask&gfpHighmem != 0:
		return "Movable"
	}
	return "Normal"
}
