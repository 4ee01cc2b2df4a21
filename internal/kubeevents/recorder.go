// SPDX-License-Identifier: Apache-2.0

// Package kubeevents posts a Kubernetes Event for each OOM kill: on the
// Pod (reason OOMKilled, or OOMKilledProcess when the container's main
// process lives on) and, for a node-wide OOM, on the Node. It folds a
// storm of kills into one Event with a count, as client-go's event
// recorder does, patching the count at most every few seconds, and bounds
// its API writes with a token bucket. Writes happen in a goroutine of
// its own behind a bounded queue: an API that is slow or down never
// holds up the event lines (kills past the queue are counted, not held).
package kubeevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/internal/event"
)

// Client writes Events: the core API group's REST client (NewClient), or
// a fake clientset's in tests.
type Client interface {
	Create(ctx context.Context, namespace string, ev *corev1.Event) (*corev1.Event, error)
	// Patch applies a strategic merge patch to the Event name.
	Patch(ctx context.Context, namespace, name string, patch []byte) (*corev1.Event, error)
}

// Config tunes the recorder; zero values take the defaults below.
type Config struct {
	// Node is the node's name: reportingInstance, source.host, and the
	// Node that node-wide OOMs are reported on.
	Node string
	// Window: a kill of the same object for the same reason within
	// Window of the last one is folded into that one's Event.
	Window time.Duration
	// PatchInterval: an Event's count is patched at most this often.
	PatchInterval time.Duration
	// QPS and Burst bound API writes, all Events together.
	QPS   float64
	Burst int
	// QueueSize bounds the kills waiting for the writer.
	QueueSize int
	// MaxEvents bounds the Events followed at once (for folding).
	MaxEvents int
	// WriteTimeout bounds one API request; CloseTimeout the last writes
	// at Close.
	WriteTimeout time.Duration
	CloseTimeout time.Duration
	// LogInterval: how often the totals are logged when they changed.
	LogInterval time.Duration
}

// Defaults. The window is client-go's aggregation window; the rate is
// far below what an API server minds, and above what a node's OOMs need
// once they are folded.
const (
	DefaultWindow        = 10 * time.Minute
	DefaultPatchInterval = 5 * time.Second
	DefaultQPS           = 1.0
	DefaultBurst         = 10
	DefaultQueueSize     = 256
	DefaultMaxEvents     = 4096
	DefaultWriteTimeout  = 10 * time.Second
	DefaultCloseTimeout  = 3 * time.Second
	DefaultLogInterval   = 10 * time.Second
)

// maxFailures: an Event whose writes failed this many times in a row
// (the API unreachable) is given up; its kills are counted as dropped.
const maxFailures = 5

func (c *Config) setDefaults() {
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDefault(&c.Window, DefaultWindow)
	setDefault(&c.PatchInterval, DefaultPatchInterval)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.CloseTimeout, DefaultCloseTimeout)
	setDefault(&c.LogInterval, DefaultLogInterval)
	if c.QPS <= 0 {
		c.QPS = DefaultQPS
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
}

// Stats are the recorder's totals since it started.
type Stats struct {
	// Kills: kills that make an Event (one on the Pod and one on the
	// Node count as two).
	Kills uint64 `json:"kills"`
	// Folded: kills counted into an Event that an earlier kill made.
	Folded uint64 `json:"folded"`
	// Creates and Patches: API writes that succeeded.
	Creates uint64 `json:"creates"`
	Patches uint64 `json:"patches"`
	// WriteErrors: API writes that failed.
	WriteErrors uint64 `json:"write_errors"`
	// QueueDrops: kills dropped because the queue was full (the API slow
	// or down); Dropped: kills that never reached the API (their Event's
	// writes failed, or too many Events at once).
	QueueDrops uint64 `json:"queue_drops"`
	Dropped    uint64 `json:"dropped"`
	// Unnamed: kills in a pod whose name is not known; no Pod Event.
	Unnamed uint64 `json:"unnamed"`
}

// Recorder turns events into Kubernetes Events. Observe never blocks.
type Recorder struct {
	cfg    Config
	client Client
	log    *zap.Logger
	now    func() time.Time

	mu     sync.RWMutex // guards closed against Observe's send
	closed bool
	queue  chan *event.Event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	kills, folded, creates, patches, writeErrors, queueDrops, dropped, unnamed atomic.Uint64

	// The writer goroutine's own.
	entries  map[string]*entry
	bucket   bucket
	failing  bool
	lastLogd Stats
	lastName int64 // the time in the last Event name made
}

// entry is one Event and the kills folded into it.
type entry struct {
	report
	name        string // the Event's name; "" until created
	count       int32  // kills folded in
	sent        int32  // the count the API has
	first, last time.Time
	due         time.Time // no write before
	failures    int
}

// New starts a recorder writing through client.
func New(client Client, cfg Config, log *zap.Logger) *Recorder {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		cfg: cfg, client: client, log: log, now: time.Now,
		queue: make(chan *event.Event, cfg.QueueSize),
		ctx:   ctx, cancel: cancel, done: make(chan struct{}),
		entries: map[string]*entry{},
	}
	r.bucket = newBucket(cfg.QPS, cfg.Burst, r.now())
	go r.run()
	return r
}

// Observe queues e for the writer, or counts it dropped when the queue
// is full. Events other than OOM kills are ignored.
func (r *Recorder) Observe(e *event.Event) {
	if e.Event != event.KindOOMKill {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	select {
	case r.queue <- e:
	default:
		r.queueDrops.Add(1)
	}
}

// Stats returns the totals so far; safe to call at any time.
func (r *Recorder) Stats() Stats {
	return Stats{
		Kills: r.kills.Load(), Folded: r.folded.Load(),
		Creates: r.creates.Load(), Patches: r.patches.Load(),
		WriteErrors: r.writeErrors.Load(), QueueDrops: r.queueDrops.Load(),
		Dropped: r.dropped.Load(), Unnamed: r.unnamed.Load(),
	}
}

// Close writes what is folded but not yet written, within CloseTimeout,
// and stops the writer.
func (r *Recorder) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.queue)
	r.mu.Unlock()
	select {
	case <-r.done:
	case <-time.After(r.cfg.CloseTimeout):
		r.cancel()
		<-r.done
	}
	r.cancel()
}

func (r *Recorder) run() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	logTick := time.NewTicker(r.cfg.LogInterval)
	defer logTick.Stop()
	for {
		select {
		case e, ok := <-r.queue:
			if !ok {
				r.flush()
				r.logTotals()
				return
			}
			r.add(e)
		case <-timer.C:
		case <-logTick.C:
			r.logTotals()
		}
		next := r.writeDue(r.now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(r.now()), time.Millisecond))
		}
	}
}

// add folds e's kills into their Events, or starts new ones.
func (r *Recorder) add(e *event.Event) {
	reps, unnamed := reports(e, r.cfg.Node)
	if unnamed {
		r.unnamed.Add(1)
	}
	now := r.now()
	at := e.Time
	if at.IsZero() {
		at = now
	}
	for _, rep := range reps {
		r.kills.Add(1)
		key := rep.key()
		if en := r.entries[key]; en != nil && at.Before(en.last.Add(r.cfg.Window)) {
			en.count++
			en.message = rep.message
			en.last = maxTime(en.last, at)
			r.folded.Add(1)
			continue
		}
		if len(r.entries) >= r.cfg.MaxEvents {
			r.expire(now)
			if len(r.entries) >= r.cfg.MaxEvents {
				r.dropped.Add(1)
				continue
			}
		}
		r.entries[key] = &entry{report: rep, count: 1, first: at, last: at, due: now}
	}
}

// expire forgets Events that are written and whose window is over.
func (r *Recorder) expire(now time.Time) {
	for key, en := range r.entries {
		if en.count == en.sent && now.Sub(en.last) >= r.cfg.Window {
			delete(r.entries, key)
		}
	}
}

// writeDue writes the Events that have unwritten kills and are due, as
// the bucket allows, and returns when the next one is due (zero: none).
func (r *Recorder) writeDue(now time.Time) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	r.expire(now)
	for _, en := range r.entries {
		if en.count == en.sent {
			continue
		}
		if en.due.After(now) {
			earliest(en.due)
			continue
		}
		if wait := r.bucket.take(now); wait > 0 {
			earliest(now.Add(wait))
			continue
		}
		r.write(r.ctx, en, now)
		if en.count != en.sent {
			earliest(en.due)
		}
	}
	return next
}

// flush writes every Event with unwritten kills, due or not, within
// CloseTimeout.
func (r *Recorder) flush() {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.CloseTimeout)
	defer cancel()
	for _, en := range r.entries {
		if en.count != en.sent && ctx.Err() == nil {
			r.write(ctx, en, r.now())
		}
	}
	for _, en := range r.entries {
		if en.count != en.sent {
			r.dropped.Add(uint64(en.count - en.sent))
		}
	}
}

// write creates en's Event, or patches its count, time and message.
func (r *Recorder) write(ctx context.Context, en *entry, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	count := en.count
	var err error
	if en.name != "" {
		err = r.patch(ctx, en, count)
		if apierrors.IsNotFound(err) {
			// The Event expired (the API server keeps them an hour) or
			// was deleted: make it again, with the whole count.
			en.name = ""
		}
	}
	if en.name == "" {
		err = r.create(ctx, en, count)
	}
	if err != nil {
		r.writeFailed(en, now, err)
		return
	}
	if r.failing {
		r.failing = false
		r.log.Info("kubernetes events: the API takes Events again")
	}
	en.sent, en.failures = count, 0
	en.due = now.Add(r.cfg.PatchInterval)
}

func (r *Recorder) create(ctx context.Context, en *entry, count int32) error {
	// client-go's naming: the object's name and the time in hex; two
	// Events made in one nanosecond (a pod's two reasons) get two.
	stamp := max(r.now().UnixNano(), r.lastName+1)
	r.lastName = stamp
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", en.ref.Name, stamp),
			Namespace: eventNamespace(en.ref),
		},
		InvolvedObject:      en.ref,
		Reason:              en.reason,
		Message:             en.message,
		Source:              corev1.EventSource{Component: Component, Host: r.cfg.Node},
		FirstTimestamp:      metav1.NewTime(en.first),
		LastTimestamp:       metav1.NewTime(en.last),
		Count:               count,
		Type:                corev1.EventTypeWarning,
		ReportingController: Component,
		ReportingInstance:   r.cfg.Node,
	}
	out, err := r.client.Create(ctx, ev.Namespace, ev)
	if err != nil {
		return err
	}
	r.creates.Add(1)
	en.name = ev.Name
	if out != nil && out.Name != "" {
		en.name = out.Name
	}
	r.log.Info("kubernetes event created", zap.String("namespace", ev.Namespace), zap.String("name", en.name), zap.String("reason", en.reason), zap.Int32("count", count))
	return nil
}

func (r *Recorder) patch(ctx context.Context, en *entry, count int32) error {
	data, err := json.Marshal(struct {
		Count         int32       `json:"count"`
		LastTimestamp metav1.Time `json:"lastTimestamp"`
		Message       string      `json:"message"`
	}{count, metav1.NewTime(en.last), en.message})
	if err != nil {
		return err
	}
	if _, err := r.client.Patch(ctx, eventNamespace(en.ref), en.name, data); err != nil {
		return err
	}
	r.patches.Add(1)
	r.log.Info("kubernetes event patched", zap.String("namespace", eventNamespace(en.ref)), zap.String("name", en.name), zap.Int32("count", count))
	return nil
}

// writeFailed counts a failed write and decides when to try again: an
// API that refuses the Event for good (forbidden, invalid, namespace
// gone) is not asked again; one that is unreachable or busy is, later.
func (r *Recorder) writeFailed(en *entry, now time.Time, err error) {
	r.writeErrors.Add(1)
	en.failures++
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		// The pod's namespace is being deleted, the pod with it: no one
		// will read the Event, and the API is well.
		r.log.Debug("kubernetes events: the namespace is being deleted", zap.String("object", en.ref.Namespace+"/"+en.ref.Name), zap.Error(err))
	} else if !r.failing {
		r.failing = true
		msg := "kubernetes events: the API refused or did not answer a write; kills are still counted and the write is retried"
		if apierrors.IsForbidden(err) {
			msg = "kubernetes events: forbidden: the agent's ServiceAccount needs create and patch on events"
		}
		r.log.Warn(msg, zap.String("reason", en.reason), zap.String("object", en.ref.Namespace+"/"+en.ref.Name), zap.Error(err))
	} else {
		r.log.Debug("kubernetes events: write failed", zap.Error(err))
	}
	if en.failures >= maxFailures || !retriable(err) {
		r.dropped.Add(uint64(en.count - en.sent))
		// Kills that come later start over.
		en.sent = en.count
		en.last = time.Time{}
		return
	}
	en.due = now.Add(r.cfg.PatchInterval << (en.failures - 1))
}

// retriable: the error may pass (a network error, a timeout, a busy
// server), unlike an answer that would be the same next time.
func retriable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
}

// logTotals logs the totals when they changed since the last time.
func (r *Recorder) logTotals() {
	s := r.Stats()
	if s == r.lastLogd {
		return
	}
	r.lastLogd = s
	r.log.Info("kubernetes events", zap.Uint64("kills", s.Kills), zap.Uint64("folded", s.Folded),
		zap.Uint64("creates", s.Creates), zap.Uint64("patches", s.Patches), zap.Uint64("write_errors", s.WriteErrors),
		zap.Uint64("queue_drops", s.QueueDrops), zap.Uint64("dropped", s.Dropped), zap.Uint64("unnamed", s.Unnamed))
}

// eventNamespace: a namespaced object's Events live in its namespace,
// a Node's in "default", as client-go puts them.
func eventNamespace(ref corev1.ObjectReference) string {
	if ref.Namespace == "" {
		return metav1.NamespaceDefault
	}
	return ref.Namespace
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// bucket is a token bucket: Burst writes at once, then QPS a second.
type bucket struct {
	tokens, rate, burst float64
	last                time.Time
}

func newBucket(qps float64, burst int, now time.Time) bucket {
	return bucket{tokens: float64(burst), rate: qps, burst: float64(burst), last: now}
}

// take takes a token and returns 0, or returns how long until one is there.
func (b *bucket) take(now time.Time) time.Duration {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}
