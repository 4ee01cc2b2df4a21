// SPDX-License-Identifier: Apache-2.0

package event

import (
	"encoding/hex"
	"fmt"
	"io"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

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
// it per call, so it is safe for concurrent use. Strings that are not
// plain ASCII go through its reflected encoder, which is textEncoder:
// see addString.
var lineEncoder = zapcore.NewJSONEncoder(zapcore.EncoderConfig{
	LineEnding:          zapcore.DefaultLineEnding,
	NewReflectedEncoder: func(w io.Writer) zapcore.ReflectedEncoder { return textEncoder{w} },
})

// EncodeLine encodes e as one line of JSON, newline included. Every
// string is escaped by appendJSONString: names chosen by others (quotes,
// control characters, terminal escapes, bidi overrides, invalid UTF-8)
// can neither split nor forge the line, nor reach a terminal raw. The
// caller frees the buffer.
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
	addString(enc, "time", FormatTime(e.Time))
	addString(enc, "event", e.Event)
	addString(enc, "node", e.Node)
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
		addString(enc, "constraint", e.Constraint)
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
	addString(enc, "code", f.Code)
	addString(enc, "summary", f.Summary)
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
	addString(enc, "gfp", o.GFP)
	enc.AddInt32("order", o.Order)
	return nil
}

func (a *Alloc) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint32("order", a.Order)
	enc.AddUint32("gfp_mask", a.GFPMask)
	addString(enc, "gfp", a.GFP)
	enc.AddBool("nowarn", a.NoWarn)
	enc.AddBool("memcg_charge", a.MemcgCharge)
	enc.AddInt32("node", a.Node)
	addString(enc, "source", a.Source)
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
		addName(enc, "cgroup", f.Cgroup)
	}
	if f.CgroupTruncated {
		enc.AddBool("cgroup_truncated", true)
	}
	addString(enc, "since", FormatTime(f.Since))
	addString(enc, "last", FormatTime(f.Last))
	return nil
}

func (v *Victim) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addTask(enc, v.PID, v.TID, v.NSPID, v.Comm)
	enc.AddUint32("uid", v.UID)
	enc.AddInt32("oom_score_adj", v.OOMScoreAdj)
	addName(enc, "cgroup", v.Cgroup)
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
	addName(enc, "comm", comm)
}

func (r RSS) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddUint64("anon_bytes", r.AnonBytes)
	enc.AddUint64("file_bytes", r.FileBytes)
	enc.AddUint64("shmem_bytes", r.ShmemBytes)
	return nil
}

func (t *Trigger) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addTask(enc, t.PID, t.TID, t.NSPID, t.Comm)
	addName(enc, "cgroup", t.Cgroup)
	if t.CgroupTruncated {
		enc.AddBool("cgroup_truncated", true)
	}
	return nil
}

func (m *Memcg) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addName(enc, "path", m.Path)
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
		addString(enc, "stat_error", m.StatError)
	}
	return nil
}

func (k *K8s) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if k.Namespace != "" {
		addString(enc, "namespace", k.Namespace)
	}
	if k.Pod != "" {
		addString(enc, "pod", k.Pod)
	}
	if k.Container != "" {
		addString(enc, "container", k.Container)
	}
	if err := addObject(enc, "workload", k.Workload); err != nil {
		return err
	}
	addString(enc, "pod_uid", k.PodUID)
	if k.ContainerID != "" {
		addString(enc, "container_id", k.ContainerID)
	}
	if k.Runtime != "" {
		addString(enc, "runtime", k.Runtime)
	}
	addString(enc, "qos", k.QOS)
	if err := addObject(enc, "pod_stat", k.PodStat); err != nil {
		return err
	}
	if k.LookupError != "" {
		addString(enc, "lookup_error", k.LookupError)
	}
	return nil
}

func (w *Workload) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	addString(enc, "kind", w.Kind)
	addString(enc, "name", w.Name)
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
	addName(enc, "comm", t.Comm)
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
	addString(enc, "zone", z.Zone)
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
			appendString(a, v)
		}
		return nil
	})
}

// addString adds a string field. Plain ASCII goes to zap as it is (its
// escapes of quotes and C0 controls are JSON's); anything else goes
// through textEncoder, since zap would write DEL, C1 controls and bidi
// overrides raw and invalid UTF-8 as U+FFFD without a trace.
func addString(enc zapcore.ObjectEncoder, key, s string) {
	if plainASCII(s) {
		enc.AddString(key, s)
		return
	}
	// textEncoder cannot fail on a jsonText.
	_ = enc.AddReflected(key, jsonText(s))
}

func appendString(a zapcore.ArrayEncoder, s string) {
	if plainASCII(s) {
		a.AppendString(s)
		return
	}
	_ = a.AppendReflected(jsonText(s))
}

// addName adds a name the kernel gave as bytes (a comm, a cgroup path)
// and, when they are not valid UTF-8, their exact bytes in hex under
// key_hex: the name's text then has U+FFFD for each invalid byte, which
// every JSON reader accepts, and nothing is lost.
func addName(enc zapcore.ObjectEncoder, key, s string) {
	addString(enc, key, s)
	if !utf8.ValidString(s) {
		enc.AddString(key+"_hex", hex.EncodeToString([]byte(s)))
	}
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// jsonText is a string for textEncoder.
type jsonText string

// textEncoder is the line encoder's reflected encoder; it encodes only
// jsonText (nothing in the event reaches zap's reflection otherwise).
type textEncoder struct{ w io.Writer }

func (t textEncoder) Encode(v any) error {
	s, ok := v.(jsonText)
	if !ok {
		return fmt.Errorf("event: no reflected encoding for %T", v)
	}
	_, err := t.w.Write(appendJSONString(nil, string(s)))
	return err
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string that holds only printable
// text: quotes and backslashes escaped; every rune that is not printable
// (strconv's notion: C0 and C1 controls, DEL, format characters such as
// bidi overrides and zero-width marks, line and paragraph separators,
// spaces other than U+0020, private use) written as its \u escape, which
// a JSON reader decodes back to the same rune; each byte that is not
// valid UTF-8 as \ufffd (addName keeps the exact bytes beside it).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
			i++
			continue
		case '\n':
			b = append(b, '\\', 'n')
			i++
			continue
		case '\r':
			b = append(b, '\\', 'r')
			i++
			continue
		case '\t':
			b = append(b, '\\', 't')
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case !unicode.IsPrint(r):
			if r > 0xffff {
				hi, lo := utf16.EncodeRune(r)
				b = appendUEscape(appendUEscape(b, hi), lo)
			} else {
				b = appendUEscape(b, r)
			}
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

func appendUEscape(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
