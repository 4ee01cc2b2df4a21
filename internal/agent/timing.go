// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/event"
)

// An event's way through the agent, timed stage by stage, for the latency
// benchmark (Config.Timings): where the time between the kernel's
// timestamp and the written line goes. Timing costs a clock read per
// stage; the record is written only when asked for.

// step is one enrichment step.
type step int

const (
	stepIdentity   step = iota // pod identity from the cgroup path
	stepNames                  // namespace, pod, container, workload
	stepMemcgStat              // memory.stat of the cgroup whose limit fired
	stepVictimStat             // memory.stat of the victim's cgroup
	stepPodStat                // memory.stat of the pod
	stepTasks                  // the task table from /proc
	stepTmpfs                  // tmpfs mounts of the cgroup's tasks
	stepBuddy                  // free blocks by order
	stepDiagnose               // the diagnosis
	stepSinks                  // metrics, Kubernetes Events, trace sessions
	numSteps
)

var stepLabels = [numSteps]string{"identity", "names", "memcg_stat", "victim_stat", "pod_stat", "tasks", "tmpfs", "buddy", "diagnose", "sinks"}

// timing is one event's record: the kernel's age of the record when it
// was read, then monotonic times from that read on.
type timing struct {
	kernelToRead time.Duration // CLOCK_BOOTTIME: kernel timestamp → record read
	read         time.Time     // the record was read (monotonic)
	decoded      time.Time
	enrichStart  time.Time // enrichment began
	enriched     time.Time // every step done, line queued
	writeStart   time.Time // the writer took it
	encoded      time.Time
	written      time.Time
	// steps: each enrichment step's own duration; concurrent steps
	// overlap, so they may add up to more than enrichment took.
	steps [numSteps]time.Duration
}

// newTiming starts a record for a record read now whose kernel timestamp
// is bootNS.
func newTiming(bootNS uint64) *timing {
	t := &timing{read: time.Now()}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		t.kernelToRead = time.Duration(ts.Nano() - int64(bootNS))
	}
	return t
}

// timeStep runs f as step s of t (t may be nil: f just runs).
func (t *timing) timeStep(s step, f func()) {
	if t == nil {
		f()
		return
	}
	start := time.Now()
	f()
	// At least 1 ns: a step that ran is told from one that did not.
	t.steps[s] = max(time.Since(start), 1)
}

// TimingRecord is the line --timings-file gets per event (the latency
// benchmark reads it back).
type TimingRecord struct {
	Event string `json:"event"`
	OOMID uint64 `json:"oom_id,omitempty"`
	PID   uint32 `json:"pid,omitempty"`
	Memcg string `json:"memcg,omitempty"` // the cgroup whose limit fired
	// Microseconds: each stage, and from the kernel's timestamp to the
	// start of enrichment and to the written line.
	KernelToReadUS    float64            `json:"kernel_to_read_us"`
	DecodeUS          float64            `json:"decode_us"`
	EnrichQueueUS     float64            `json:"enrich_queue_us"`
	EnrichUS          float64            `json:"enrich_us"`
	OutputQueueUS     float64            `json:"output_queue_us"`
	EncodeUS          float64            `json:"encode_us"`
	WriteUS           float64            `json:"write_us"`
	KernelToEnrichUS  float64            `json:"kernel_to_enrich_us"`
	KernelToWrittenUS float64            `json:"kernel_to_written_us"`
	StepsUS           map[string]float64 `json:"steps_us"`
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func (t *timing) record(e *event.Event) TimingRecord {
	r := TimingRecord{
		Event:             e.Event,
		OOMID:             e.OOMID,
		KernelToReadUS:    us(t.kernelToRead),
		DecodeUS:          us(t.decoded.Sub(t.read)),
		EnrichQueueUS:     us(t.enrichStart.Sub(t.decoded)),
		EnrichUS:          us(t.enriched.Sub(t.enrichStart)),
		OutputQueueUS:     us(t.writeStart.Sub(t.enriched)),
		EncodeUS:          us(t.encoded.Sub(t.writeStart)),
		WriteUS:           us(t.written.Sub(t.encoded)),
		KernelToEnrichUS:  us(t.kernelToRead + t.enrichStart.Sub(t.read)),
		KernelToWrittenUS: us(t.kernelToRead + t.written.Sub(t.read)),
		StepsUS:           map[string]float64{},
	}
	if e.Victim != nil {
		r.PID = e.Victim.PID
	}
	if e.Memcg != nil {
		r.Memcg = e.Memcg.Path
	}
	for s, d := range t.steps {
		if d > 0 {
			r.StepsUS[stepLabels[s]] = us(d)
		}
	}
	return r
}

// timingLog writes one JSON line per written event to w.
type timingLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *timingLog) write(e *event.Event, t *timing) {
	if l == nil || t == nil {
		return
	}
	b, err := json.Marshal(t.record(e))
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(append(b, '\n'))
}
