// SPDX-License-Identifier: Apache-2.0

package event

import (
	"fmt"
	"time"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// The event line is written field by field through zap's typed object
// encoder: no reflection on the hot path, and the order of keys is the
// order below. Each MarshalLogObject writes the same keys as the type's
// json tags, omitting exactly what omitempty omits; the round-trip test
// (encode_test.go) holds the two together.

// lineEncoder writes bare objects: no message, level or time keys of
// zap's own, since the event writes all of its keys. EncodeEntry clones
// it per call, so it is safe for concurrent use.
var lineEncoder = zapcore.NewJSONEncoder(zapcore.EncoderConfig{LineEnding: zapcore.DefaultLineEnding})

// EncodeLine encodes e as one line of JSON, newline included. zap's
// encoder escapes what names chosen by others may hold (quotes, control
// characters, invalid UTF-8). The caller frees the buffer.
func EncodeLine(e *Event) (*buffer.Buffer, error) {
	buf, err := lineEncoder.EncodeEntry(zapcore.Entry{}, []zapcore.Field{{Type: zapcore.InlineMarshalerType, Interface: e}})
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", e.Event, err)
	}
	return buf, nil
}

// TimeFormat is RFC 3339 with all nine digits of nanoseconds, in UTC, so
// lines sort as text and every line has the same shape.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime is how an event's time looks on the line.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// MarshalLogObject writes the event's fields; "time" first, then "event".
func (e *Event) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("time", FormatTime(e.Time))
	enc.AddString("event", e.Event)
	enc.AddString("node", e.Node)
	if len(e.Diagnosis) > 0 {
		if err := enc.AddArray("diagnosis", objects(e.Diagnosis)); err != nil {
			return err
		}
	}
	if e.OOMID != 0 {
		enc.AddUint64("oom_id", e.OOMID)
	}
	if e.GroupKill {
		enc.AddBool("group_kill", true)
	}
	if err := addObject(enc, "victim", e.Victim); err != nil {
		return err
	}
	if err := addObject(enc, "trigger", e.Trigger); err != nil {
		return err
	}
	if e.Constraint != "" {
		enc.AddString("constraint", e.Constraint)
	}
	if err := addObject(enc, "memcg", e.Memcg); err != nil {
		return err
	}
	if err := addObject(enc, "oom", e.OOM); err != nil {
		return err
	}
	if err := addObject(enc, "alloc", e.Alloc); err != nil {
		return err
	}
	if err := addObject(enc, "folded", e.Folded); err != nil {
		return err
	}
	if err := addObject(enc, "k8s", e.K8s); err != nil {
		return err
	}
	if e.VictimFound != nil {
		enc.AddBool("victim_found", *e.VictimFound)
	}
	if e.Victims != nil {
		enc.AddUint32("victims", *e.Victims)
	}
	if e.Handled != nil {
		enc.AddBool("oom_handled", *e.Handled)
	}
	if len(e.Stack) > 0 {
		if err := enc.AddArray("stack", stringArray(e.Stack)); err != nil {
			return err
		}
	}
	if len(e.Tasks) > 0 {
		if err := enc.AddArray("tasks", objects(e.Tasks)); err != nil {
			return err
		}
	}
	if len(e.TmpfsMounts) > 0 {
		if err := enc.AddArray("tmpfs_mounts", stringArray(e.TmpfsMounts)); err != nil {
			return err
		}
	}
	if len(e.Buddy) > 0 {
		return enc.AddArray("buddy", objects(e.Buddy))
	}
	return nil
}

func (f Finding) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("code", f.Code)
	enc.AddString("summary", f.Summary)
	return nil
}

func (o *OOMContext) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if o.DomainBytes != 0 {
		enc.AddUint64("domain_bytes", o.DomainBytes)
	}
	if o.ChosenPoints != 0 {
		enc.AddInt64("chosen_points", o.ChosenPoints)
	}
	enc.AddUint32("gfp_mask", o.GFPMask)
	enc.AddString("gfp", o.GFP)
	enc.AddInt32("order", o.Order)
	return nil
}

func (a *Alloc) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint32("order", a.Order)
	enc.AddUint32("gfp_mask", a.GFPMask)
	enc.AddString("gfp", a.GFP)
	enc.AddBool("nowarn", a.NoWarn)
	enc.AddBool("memcg_charge", a.MemcgCharge)
	enc.AddInt32("node", a.Node)
	enc.AddString("source", a.Source)
	if a.FreeBytes != nil {
		enc.AddUint64("free_bytes", *a.FreeBytes)
	}
	if a.FreeBytesAtOrAboveOrder != nil {
		enc.AddUint64("free_bytes_at_or_above_order", *a.FreeBytesAtOrAboveOrder)
	}
	if a.CgroupID != 0 {
		enc.AddUint64("cgroup_id", a.CgroupID)
	}
	return nil
}

func (f *Folded) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint64("count", f.Count)
	enc.AddUint64("records", f.Records)
	if f.Cgroup != "" {
		enc.AddString("cgroup", f.Cgroup)
	}
	if f.CgroupTruncated {
		enc.AddBool("cgroup_truncated", true)
	}
	enc.AddString("since", FormatTime(f.Since))
	enc.AddString("last", FormatTime(f.Last))
	return nil
}

func (v *Victim) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addTask(enc, v.PID, v.TID, v.NSPID, v.Comm)
	enc.AddUint32("uid", v.UID)
	enc.AddInt32("oom_score_adj", v.OOMScoreAdj)
	enc.AddString("cgroup", v.Cgroup)
	if v.CgroupTruncated {
		enc.AddBool("cgroup_truncated", true)
	}
	if err := addObject(enc, "cgroup_stat", v.CgroupStat); err != nil {
		return err
	}
	if err := enc.AddObject("rss", v.RSS); err != nil {
		return err
	}
	enc.AddUint64("swap_bytes", v.SwapBytes)
	enc.AddUint64("total_vm_bytes", v.TotalVMBytes)
	enc.AddUint64("pgtables_bytes", v.PgtablesBytes)
	return nil
}

// addTask writes what names a task, the same for victim and trigger.
func addTask(enc zapcore.ObjectEncoder, pid, tid, nsPID uint32, comm string) {
	enc.AddUint32("pid", pid)
	enc.AddUint32("tid", tid)
	enc.AddUint32("ns_pid", nsPID)
	enc.AddString("comm", comm)
}

func (r RSS) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint64("anon_bytes", r.AnonBytes)
	enc.AddUint64("file_bytes", r.FileBytes)
	enc.AddUint64("shmem_bytes", r.ShmemBytes)
	return nil
}

func (t *Trigger) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addTask(enc, t.PID, t.TID, t.NSPID, t.Comm)
	enc.AddString("cgroup", t.Cgroup)
	if t.CgroupTruncated {
		enc.AddBool("cgroup_truncated", true)
	}
	return nil
}

func (m *Memcg) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("path", m.Path)
	if m.PathTruncated {
		enc.AddBool("path_truncated", true)
	}
	enc.AddUint64("limit_bytes", m.LimitBytes)
	enc.AddUint64("usage_bytes", m.UsageBytes)
	enc.AddUint64("failcnt", m.Failcnt)
	if err := addObject(enc, "stat", m.Stat); err != nil {
		return err
	}
	if m.StatDelayUS != nil {
		enc.AddInt64("stat_delay_us", *m.StatDelayUS)
	}
	if m.StatError != "" {
		enc.AddString("stat_error", m.StatError)
	}
	return nil
}

func (k *K8s) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if k.Namespace != "" {
		enc.AddString("namespace", k.Namespace)
	}
	if k.Pod != "" {
		enc.AddString("pod", k.Pod)
	}
	if k.Container != "" {
		enc.AddString("container", k.Container)
	}
	if err := addObject(enc, "workload", k.Workload); err != nil {
		return err
	}
	enc.AddString("pod_uid", k.PodUID)
	if k.ContainerID != "" {
		enc.AddString("container_id", k.ContainerID)
	}
	if k.Runtime != "" {
		enc.AddString("runtime", k.Runtime)
	}
	enc.AddString("qos", k.QOS)
	if err := addObject(enc, "pod_stat", k.PodStat); err != nil {
		return err
	}
	if k.LookupError != "" {
		enc.AddString("lookup_error", k.LookupError)
	}
	return nil
}

func (w *Workload) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("kind", w.Kind)
	enc.AddString("name", w.Name)
	return nil
}

func (s *MemoryStat) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint64("anon_bytes", s.AnonBytes)
	enc.AddUint64("file_bytes", s.FileBytes)
	enc.AddUint64("shmem_bytes", s.ShmemBytes)
	enc.AddUint64("kernel_bytes", s.KernelBytes)
	enc.AddUint64("file_dirty_bytes", s.FileDirtyBytes)
	enc.AddUint64("file_writeback_bytes", s.FileWritebackBytes)
	enc.AddUint64("unevictable_bytes", s.UnevictableBytes)
	return nil
}

func (t Task) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddInt("pid", t.PID)
	enc.AddInt("ns_pid", t.NSPID)
	enc.AddString("comm", t.Comm)
	enc.AddUint64("rss_bytes", t.RSSBytes)
	enc.AddUint64("anon_bytes", t.AnonBytes)
	enc.AddUint64("file_bytes", t.FileBytes)
	enc.AddUint64("shmem_bytes", t.ShmemBytes)
	enc.AddUint64("swap_bytes", t.SwapBytes)
	enc.AddUint64("pgtables_bytes", t.PgtablesBytes)
	enc.AddInt("oom_score_adj", t.OOMScoreAdj)
	enc.AddInt64("points", t.Points)
	return nil
}

func (z Zone) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddInt("node", z.Node)
	enc.AddString("zone", z.Zone)
	return enc.AddArray("free_blocks", zapcore.ArrayMarshalerFunc(func(a zapcore.ArrayEncoder) error {
		for _, n := range z.FreeBlocks {
			a.AppendUint64(n)
		}
		return nil
	}))
}

// addObject adds v under key unless it is nil (omitempty on a pointer).
func addObject[T any, P interface {
	*T
	zapcore.ObjectMarshaler
}](enc zapcore.ObjectEncoder, key string, v P) error {
	if v == nil {
		return nil
	}
	return enc.AddObject(key, v)
}

// objects is a slice of values that encode themselves, as a JSON array.
func objects[T zapcore.ObjectMarshaler](s []T) zapcore.ArrayMarshaler {
	return zapcore.ArrayMarshalerFunc(func(a zapcore.ArrayEncoder) error {
		for _, v := range s {
			if err := a.AppendObject(v); err != nil {
				return err
			}
		}
		return nil
	})
}

func stringArray(s []string) zapcore.ArrayMarshaler {
	return zapcore.ArrayMarshalerFunc(func(a zapcore.ArrayEncoder) error {
		for _, v := range s {
			a.AppendString(v)
		}
		return nil
	})
}
