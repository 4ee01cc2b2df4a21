// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// oomKill is an oom_kill event of a process in pod ns/pod, container c.
func oomKill(ns, pod, c string, codes ...string) *event.Event {
	e := &event.Event{
		Event: event.KindOOMKill, Constraint: event.ConstraintMemcg,
		Victim: &event.Victim{PID: 4242, NSPID: 1, Comm: "memhog"},
		K8s:    &event.K8s{Namespace: ns, Pod: pod, Container: c, PodUID: "uid-" + pod},
	}
	for _, code := range codes {
		e.Diagnosis = append(e.Diagnosis, event.Finding{Code: code, Summary: "..."})
	}
	return e
}

func memcgOOM(ns, pod string, victimFound bool) *event.Event {
	return &event.Event{
		Event: event.KindMemcgOOM, Constraint: event.ConstraintMemcg, VictimFound: &victimFound,
		Memcg: &event.Memcg{Path: "/kubepods/pod" + pod},
		K8s:   &event.K8s{Namespace: ns, Pod: pod, PodUID: "uid-" + pod},
	}
}

func allocFailure(order, mask uint32) *event.Event {
	return &event.Event{Event: event.KindAllocFailure, Alloc: &event.Alloc{Order: order, GFPMask: mask}}
}

// scrape fetches the handler's exposition, as Prometheus does, once
// every event observed so far is counted.
func scrape(t *testing.T, m *Metrics) metricstest.Samples {
	t.Helper()
	m.flush()
	text := scrapeText(t, m)
	got, err := metricstest.Parse(text)
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return got
}

func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, b)
	}
	return string(b)
}

// want checks samples by their full name and labels.
func want(t *testing.T, got metricstest.Samples, samples map[string]float64) {
	t.Helper()
	for k, v := range samples {
		g, ok := got[k]
		if !ok {
			t.Errorf("no sample %s; have:\n%s", k, got.Family(k[:strings.IndexByte(k, '{')]))
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func newMetrics(t *testing.T, o Options) *Metrics {
	t.Helper()
	if o.bpfStatsFile == "" {
		o.bpfStatsFile = filepath.Join(t.TempDir(), "absent")
	}
	m := New(o)
	t.Cleanup(m.Close)
	return m
}

// Every oom_kill counts once, under its pod's names, the constraint and
// the first diagnosis code; a group kill's members are kills each.
func TestOOMKillsByPod(t *testing.T) {
	m := newMetrics(t, Options{})
	for range 3 {
		m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit))
	}
	for range 2 {
		e := oomKill("shop", "web-1", "app", diagnose.GroupKill, diagnose.ContainerLimit)
		e.GroupKill = true
		m.Observe(e)
	}
	m.Observe(oomKill("batch", "job-x", "worker", diagnose.ShmemDominant, diagnose.PodLimit))
	global := &event.Event{Event: event.KindOOMKill, Constraint: event.ConstraintGlobal, Victim: &event.Victim{PID: 7, Comm: "java"}}
	m.Observe(global)

	got := scrape(t, m)
	want(t, got, map[string]float64{
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="web-1"}`:    3,
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="group_kill",namespace="shop",pod="web-1"}`:         2,
		`oomtrace_oom_kills_total{constraint="memcg",container="worker",diagnosis="shmem_dominant",namespace="batch",pod="job-x"}`: 1,
		// A process outside any pod: no pod labels.
		`oomtrace_oom_kills_total{constraint="global",diagnosis="none"}`: 1,
		`oomtrace_events_total{event="oom_kill"}`:                        7,
		`oomtrace_events_total{event="memcg_oom"}`:                       0,
	})
	if n := testutil.CollectAndCount(m.oomKills); n != 4 {
		t.Errorf("%d oom_kills series, want 4:\n%s", n, got.Family("oomtrace_oom_kills_total"))
	}
	// The sum over a pod's series is what a query for the pod returns.
	if sum := got.Sum("oomtrace_oom_kills_total", `pod="web-1"`); sum != 5 {
		t.Errorf("web-1's kills sum to %v, want 5", sum)
	}
}

// A kill of a process that is not its container's PID 1 is counted in
// oom_kills_total under its first code and in oom_kills_non_init_total.
func TestNonInitKills(t *testing.T) {
	m := newMetrics(t, Options{})
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit, diagnose.NonInitVictim))
	m.Observe(oomKill("shop", "web-1", "app", diagnose.NonInitVictim))
	m.Observe(oomKill("shop", "web-2", "app", diagnose.ContainerLimit)) // PID 1: not counted there
	got := scrape(t, m)
	want(t, got, map[string]float64{
		`oomtrace_oom_kills_non_init_total{container="app",namespace="shop",pod="web-1"}`:                                       2,
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="web-1"}`: 1,
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="non_init_victim",namespace="shop",pod="web-1"}`: 1,
	})
	if _, ok := got[`oomtrace_oom_kills_non_init_total{container="app",namespace="shop",pod="web-2"}`]; ok {
		t.Error("a PID 1 kill was counted as non-init")
	}
}

func TestMemcgOOMsAndAllocFailures(t *testing.T) {
	m := newMetrics(t, Options{})
	m.Observe(memcgOOM("shop", "web-1", true))
	m.Observe(memcgOOM("shop", "web-1", true))
	m.Observe(memcgOOM("shop", "web-1", false))
	m.Observe(allocFailure(3, 0xcc0))      // GFP_KERNEL
	m.Observe(allocFailure(3, 0xcc0))      // GFP_KERNEL
	m.Observe(allocFailure(2, 0xcc0|0x04)) // __GFP_DMA32
	m.Observe(allocFailure(1, 0x100cca))   // GFP_HIGHUSER_MOVABLE
	m.Observe(allocFailure(4, 0xcc0|0x01)) // GFP_DMA
	m.Observe(allocFailure(5, 0x100cc0|8)) // __GFP_MOVABLE without HIGHMEM: Normal
	// A flood: one line of its own, 4981 folded.
	m.Observe(&event.Event{Event: event.KindAllocFailuresFolded, Alloc: &event.Alloc{Order: 3, GFPMask: 0xcc0}, Folded: &event.Folded{Count: 4981}})
	got := scrape(t, m)
	want(t, got, map[string]float64{
		`oomtrace_memcg_ooms_total{namespace="shop",pod="web-1",victim_found="true"}`:  2,
		`oomtrace_memcg_ooms_total{namespace="shop",pod="web-1",victim_found="false"}`: 1,
		`oomtrace_alloc_failures_total{order="3",zone="Normal"}`:                       2 + 4981,
		`oomtrace_alloc_failures_total{order="2",zone="DMA32"}`:                        1,
		`oomtrace_alloc_failures_total{order="1",zone="Movable"}`:                      1,
		`oomtrace_alloc_failures_total{order="4",zone="DMA"}`:                          1,
		`oomtrace_alloc_failures_total{order="5",zone="Normal"}`:                       1,
		`oomtrace_events_total{event="alloc_failure"}`:                                 6,
		`oomtrace_events_total{event="memcg_oom"}`:                                     3,
		`oomtrace_events_total{event="alloc_failures_folded"}`:                         1,
	})
}

// Events whose names or memory.stat could not be read are counted, each
// reason apart; the event itself still counts as a kill.
func TestEnrichmentFailures(t *testing.T) {
	m := newMetrics(t, Options{})
	e := oomKill("", "", "", diagnose.ContainerLimit)
	e.K8s.LookupError = "container runtime: connection refused"
	m.Observe(e)
	e = oomKill("shop", "web-1", "app", diagnose.ContainerLimit)
	e.Memcg = &event.Memcg{StatError: "the cgroup was removed before its memory.stat could be read"}
	m.Observe(e)
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit))
	want(t, scrape(t, m), map[string]float64{
		`oomtrace_enrichment_failures_total{what="names"}`:                                                                      1,
		`oomtrace_enrichment_failures_total{what="memory_stat"}`:                                                                1,
		`oomtrace_oom_kills_total{constraint="memcg",diagnosis="container_limit"}`:                                              1,
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="web-1"}`: 2,
	})
}

// A series with no event for the TTL goes; one with a recent event stays;
// a pod that is OOM-killed again later starts a new series.
func TestSeriesExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	m := newMetrics(t, Options{SeriesTTL: 6 * time.Hour, now: clock})
	m.Observe(oomKill("shop", "deleted-pod", "app", diagnose.ContainerLimit, diagnose.NonInitVictim))
	m.Observe(memcgOOM("shop", "deleted-pod", true))
	m.Observe(oomKill("shop", "live-pod", "app", diagnose.ContainerLimit))
	m.flush() // counted at the clock's time now
	advance(5 * time.Hour)
	m.Observe(oomKill("shop", "live-pod", "app", diagnose.ContainerLimit))
	m.flush()
	advance(90 * time.Minute)
	m.expireNow()

	got := scrape(t, m)
	for k := range got {
		if strings.Contains(k, "deleted-pod") {
			t.Errorf("series of a pod without events for 6h30m is still there: %s", k)
		}
	}
	want(t, got, map[string]float64{
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="live-pod"}`: 2,
		`oomtrace_metrics_series_expired_total{}`: 3,
	})

	advance(7 * time.Hour)
	m.expireNow()
	m.Observe(oomKill("shop", "live-pod", "app", diagnose.ContainerLimit))
	want(t, scrape(t, m), map[string]float64{
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="live-pod"}`: 1,
		`oomtrace_metrics_series_expired_total{}`: 4,
	})
}

// With a TTL of 0 nothing expires.
func TestSeriesKeptWithoutTTL(t *testing.T) {
	m := newMetrics(t, Options{})
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit))
	m.expireNow()
	if n := testutil.CollectAndCount(m.oomKills); n != 1 {
		t.Errorf("%d series, want 1", n)
	}
}

// Observe never waits: with the counting goroutine held up and the queue
// full, further events are dropped and counted as lost.
func TestObserveNeverBlocks(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	clock := func() time.Time {
		once.Do(func() { close(entered); <-release })
		return time.Now()
	}
	m := newMetrics(t, Options{QueueSize: 1, SeriesTTL: time.Hour, now: clock})
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit))
	<-entered // the goroutine holds the first event
	start := time.Now()
	for range 5 {
		m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit)) // one queued, four dropped
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Observe waited %s on a stalled queue", d)
	}
	close(release)
	want(t, scrape(t, m), map[string]float64{
		`oomtrace_events_lost_total{stage="metrics_queue"}`:                                                                     4,
		`oomtrace_oom_kills_total{constraint="memcg",container="app",diagnosis="container_limit",namespace="shop",pod="web-1"}`: 2,
	})
}

// fakeSource stands for a running agent.
type fakeSource struct {
	kernel    probe.Counters
	kernelErr error
	user      agent.UserSpaceLoss
	progs     []agent.ProgramStat
}

func (f *fakeSource) Kernel() (probe.Counters, error)        { return f.kernel, f.kernelErr }
func (f *fakeSource) UserSpace() agent.UserSpaceLoss         { return f.user }
func (f *fakeSource) Programs() ([]agent.ProgramStat, error) { return f.progs, nil }

// Losses in the kernel and in user space, and the BPF programs' own
// statistics, are read from the agent when scraped.
func TestAgentCounters(t *testing.T) {
	statsFile := filepath.Join(t.TempDir(), "bpf_stats_enabled")
	if err := os.WriteFile(statsFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(t, Options{bpfStatsFile: statsFile})

	// Before the probes are attached: only what the metrics lost.
	got := scrape(t, m)
	want(t, got, map[string]float64{`oomtrace_events_lost_total{stage="metrics_queue"}`: 0})
	if _, ok := got[`oomtrace_events_lost_total{stage="kernel_ringbuf"}`]; ok {
		t.Error("kernel losses reported before the agent runs")
	}

	src := &fakeSource{
		kernel: probe.Counters{RingBufFull: 7, SeenMapFull: 1, CtxMapFull: 2, AllocNoWarn: 30, AllocBelowOrder: 40},
		user:   agent.UserSpaceLoss{QueueDrops: 3, OutputDrops: 4, DecodeErrors: 5, WriteErrors: 6},
		progs: []agent.ProgramStat{
			{Name: "mark_victim", RunCount: 12, Runtime: 1500 * time.Microsecond},
			{Name: "oom_kill_process", RunCount: 12, Runtime: 250 * time.Millisecond},
		},
	}
	m.SetSource(src)
	want(t, scrape(t, m), map[string]float64{
		`oomtrace_events_lost_total{stage="kernel_ringbuf"}`:                 7,
		`oomtrace_events_lost_total{stage="decode_queue"}`:                   3,
		`oomtrace_events_lost_total{stage="output_queue"}`:                   4,
		`oomtrace_record_decode_errors_total{}`:                              5,
		`oomtrace_event_write_errors_total{}`:                                6,
		`oomtrace_kernel_map_full_total{map="oom_kills_seen"}`:               1,
		`oomtrace_kernel_map_full_total{map="oom_ctx"}`:                      2,
		`oomtrace_alloc_failures_unreported_total{reason="nowarn"}`:          30,
		`oomtrace_alloc_failures_unreported_total{reason="below_min_order"}`: 40,
		`oomtrace_bpf_stats_enabled{}`:                                       1,
		`oomtrace_bpf_program_runs_total{program="mark_victim"}`:             12,
		`oomtrace_bpf_program_run_seconds_total{program="mark_victim"}`:      0.0015,
		`oomtrace_bpf_program_run_seconds_total{program="oom_kill_process"}`: 0.25,
	})

	// Statistics off now: said; the counts of when they were on stay.
	if err := os.WriteFile(statsFile, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, scrape(t, m), map[string]float64{
		`oomtrace_bpf_stats_enabled{}`:                           0,
		`oomtrace_bpf_program_runs_total{program="mark_victim"}`: 12,
	})
	// Never on: every count is 0, and no program series looks idle.
	for i := range src.progs {
		src.progs[i].RunCount, src.progs[i].Runtime = 0, 0
	}
	for k := range scrape(t, m) {
		if strings.HasPrefix(k, "oomtrace_bpf_program_") {
			t.Errorf("program statistics while the kernel never kept any: %s", k)
		}
	}

	// The agent stopping: its counters go, the scrape still works.
	src.kernelErr = agent.ErrStopped
	got = scrape(t, m)
	if _, ok := got[`oomtrace_events_lost_total{stage="kernel_ringbuf"}`]; ok {
		t.Error("kernel losses reported after the agent stopped")
	}

	// Any other error reading the kernel's counters fails that part of
	// the scrape visibly, not as a zero.
	src.kernelErr = errors.New("map lookup: bad file descriptor")
	m.flush()
	text := scrapeText(t, m)
	if strings.Contains(text, `stage="kernel_ringbuf"`) {
		t.Error("an unreadable counter was reported as a number")
	}
}

// The exposition follows Prometheus' conventions (promlint: counters end
// in _total, units in names, help on every metric).
func TestExpositionLint(t *testing.T) {
	m := newMetrics(t, Options{})
	m.Observe(oomKill("shop", "web-1", "app", diagnose.ContainerLimit, diagnose.NonInitVictim))
	m.Observe(memcgOOM("shop", "web-1", true))
	m.Observe(allocFailure(3, 0xcc0))
	m.SetSource(&fakeSource{progs: []agent.ProgramStat{{Name: "mark_victim"}}})
	m.flush()
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "oomtrace_") {
			ours = append(ours, p.Metric+": "+p.Text)
		}
	}
	if len(ours) > 0 {
		t.Errorf("lint:\n%s", strings.Join(ours, "\n"))
	}
	// Every metric this package defines has a name with the prefix.
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "go_") && !strings.HasPrefix(f.GetName(), "process_") {
			names = append(names, f.GetName())
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "oomtrace_") {
			t.Errorf("metric %s lacks the oomtrace_ prefix", n)
		}
	}
	if !slices.Contains(names, "oomtrace_oom_kills_total") {
		t.Errorf("oomtrace_oom_kills_total not gathered: %v", names)
	}
}
