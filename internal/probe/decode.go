// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/gfp"
)

// Decoder turns ring buffer records (the C structs of bpf/events.h, as
// bpf2go generated them) into events.
type Decoder struct {
	PageSize uint64
	Node     string
	// BootToWall converts CLOCK_BOOTTIME nanoseconds to wall-clock time.
	BootToWall func(bootNS uint64) time.Time
	// GFP names allocation flags; nil leaves gfp names out.
	GFP *gfp.Flags
	// Symbols names kernel stack frames; nil leaves them as addresses.
	Symbols interface{ Stack([]uint64) []string }

	// inferred is the last OOM whose constraint the tracepoint tier
	// inferred. The members of a group kill share that OOM, but by the
	// time each is marked the first victim's memory may be freed and the
	// page counters no longer show the limit: they take its answer.
	// (Decode is called from one goroutine.)
	inferred struct {
		oomID      uint64
		constraint string
		memcg      *event.Memcg
	}
}

var (
	headerSize = binary.Size(bpf.OomtraceEventHeader{})
	recordSize = map[bpf.OomtraceEventKind]int{
		bpf.OomtraceEventKindEVENT_OOM_KILL:           binary.Size(bpf.OomtraceOomKillEvent{}),
		bpf.OomtraceEventKindEVENT_OOM_VICTIM_EXITING: binary.Size(bpf.OomtraceOomKillEvent{}),
		bpf.OomtraceEventKindEVENT_MEMCG_OOM:          binary.Size(bpf.OomtraceMemcgOomEvent{}),
		bpf.OomtraceEventKindEVENT_ALLOC_FAILURE:      binary.Size(bpf.OomtraceAllocFailureEvent{}),
	}
)

// Decode decodes one record. It never panics on bad input: a short or
// unknown record is an error naming what was expected.
func (d *Decoder) Decode(raw []byte) (*event.Event, error) {
	var hdr bpf.OomtraceEventHeader
	if _, err := binary.Decode(raw, binary.NativeEndian, &hdr); err != nil {
		return nil, fmt.Errorf("record of %d bytes: want at least a %d-byte header", len(raw), headerSize)
	}
	kind := bpf.OomtraceEventKind(hdr.Kind)
	size, ok := recordSize[kind]
	if !ok {
		return nil, fmt.Errorf("record kind %d: want one of 1 (oom_kill), 2 (oom_victim_exiting), 3 (memcg_oom), 4 (alloc_failure)", hdr.Kind)
	}
	if len(raw) < size {
		return nil, fmt.Errorf("%s record of %d bytes: want %d", kindName(kind), len(raw), size)
	}
	switch kind {
	case bpf.OomtraceEventKindEVENT_MEMCG_OOM:
		var r bpf.OomtraceMemcgOomEvent
		copyRecord(&r, raw)
		return d.memcgOOM(&r), nil
	case bpf.OomtraceEventKindEVENT_ALLOC_FAILURE:
		var r bpf.OomtraceAllocFailureEvent
		copyRecord(&r, raw)
		return d.allocFailure(&r), nil
	}
	var r bpf.OomtraceOomKillEvent
	copyRecord(&r, raw)
	return d.oomKill(&r), nil
}

// copyRecord fills r, a record struct as bpf2go generated it (the C
// layout, padding explicit, host byte order), from raw, whose length was
// checked: a byte copy. binary.Decode walks such a struct field by field
// and element by element by reflection, ~150 µs for a 3 KiB oom_kill
// record, on the path from the kernel to the line.
func copyRecord[T any](r *T, raw []byte) {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r)), raw)
}

func kindName(k bpf.OomtraceEventKind) string {
	switch k {
	case bpf.OomtraceEventKindEVENT_OOM_KILL:
		return event.KindOOMKill
	case bpf.OomtraceEventKindEVENT_OOM_VICTIM_EXITING:
		return event.KindOOMVictimExiting
	case bpf.OomtraceEventKindEVENT_MEMCG_OOM:
		return event.KindMemcgOOM
	case bpf.OomtraceEventKindEVENT_ALLOC_FAILURE:
		return event.KindAllocFailure
	}
	return fmt.Sprintf("kind %d", k)
}

func (d *Decoder) bytes(pages uint64) uint64 { return pages * d.PageSize }

func (d *Decoder) oomKill(r *bpf.OomtraceOomKillEvent) *event.Event {
	victimCgroup := cgroupPath(&r.VictimCgroup)
	e := &event.Event{
		Event: kindName(bpf.OomtraceEventKind(r.Hdr.Kind)),
		Time:  d.BootToWall(r.Hdr.BootNs),
		Node:  d.Node,
		OOMID: r.Oom.OomId,
		Victim: &event.Victim{
			PID:             r.Victim.Pid,
			TID:             r.Victim.Tid,
			NSPID:           r.Victim.NsPid,
			Comm:            cString(r.Victim.Comm[:]),
			UID:             r.Victim.Uid,
			OOMScoreAdj:     r.Victim.OomScoreAdj,
			Cgroup:          victimCgroup,
			CgroupTruncated: r.VictimCgroup.Truncated != 0,
			RSS: event.RSS{
				AnonBytes:  d.bytes(r.RssAnonPages),
				FileBytes:  d.bytes(r.RssFilePages),
				ShmemBytes: d.bytes(r.RssShmemPages),
			},
			SwapBytes:     d.bytes(r.SwapEntries),
			TotalVMBytes:  d.bytes(r.TotalVmPages),
			PgtablesBytes: r.PgtablesBytes,
		},
		Trigger:   d.trigger(&r.Trigger, &r.TriggerCgroup),
		GroupKill: r.Oom.GroupKill != 0,
		Stack:     d.stack(&r.Stack),
	}
	levels := levelsOf(r.Levels[:min(int(r.NrLevels), len(r.Levels))])

	if r.Oom.Valid != 0 {
		// oom_kill_process saw struct oom_control: the kernel's own
		// constraint stands, whatever the page counters look like.
		e.Constraint = constraintName(r.Oom.Constraint)
		e.OOM = &event.OOMContext{
			DomainBytes:  d.bytes(r.Oom.Totalpages),
			ChosenPoints: r.Oom.ChosenPoints,
			GFPMask:      r.Oom.GfpMask,
			GFP:          d.gfpNames(r.Oom.GfpMask),
			Order:        r.Oom.Order,
		}
		if e.Constraint == event.ConstraintMemcg {
			for i, l := range levels {
				if l.CgroupID == r.Oom.MemcgId {
					e.Memcg = d.memcg(AncestorPath(victimCgroup, i), e.Victim.CgroupTruncated, l)
					break
				}
			}
		}
		return e
	}
	// Tracepoint tier: infer the level from the page counters. A memcg
	// OOM is charged by the trigger, so the level that fired is also one
	// of the trigger's cgroups; a victim whose own cgroup merely sits near
	// its limit in a global OOM is not taken for a memcg OOM. Cut paths
	// cannot be compared: the page counters alone decide then.
	if d.inferred.oomID != 0 && e.OOMID == d.inferred.oomID && e.GroupKill {
		e.Constraint = d.inferred.constraint
		if d.inferred.memcg != nil {
			m := *d.inferred.memcg
			e.Memcg = &m
		}
		return e
	}
	e.Constraint = event.ConstraintGlobal
	if i, ok := LimitLevel(levels); ok {
		path := AncestorPath(victimCgroup, i)
		if e.Victim.CgroupTruncated || e.Trigger.CgroupTruncated || IsAncestorOrSelf(path, e.Trigger.Cgroup) {
			e.Constraint = event.ConstraintMemcg
			e.Memcg = d.memcg(path, e.Victim.CgroupTruncated, levels[i])
		}
	}
	d.inferred.oomID, d.inferred.constraint, d.inferred.memcg = e.OOMID, e.Constraint, nil
	if e.Memcg != nil {
		m := *e.Memcg
		d.inferred.memcg = &m
	}
	return e
}

// IsAncestorOrSelf reports whether cgroup path anc is path or one of its
// ancestors. An empty path (no memory controller) is nobody's ancestor.
func IsAncestorOrSelf(anc, path string) bool {
	if anc == "" || path == "" {
		return false
	}
	return anc == "/" || path == anc || strings.HasPrefix(path, anc+"/")
}

func (d *Decoder) memcgOOM(r *bpf.OomtraceMemcgOomEvent) *event.Event {
	handled := r.VictimFound != 0
	victims := r.Victims
	found := victims > 0
	e := &event.Event{
		Event:       event.KindMemcgOOM,
		Time:        d.BootToWall(r.Hdr.BootNs),
		Node:        d.Node,
		OOMID:       r.OomId,
		Trigger:     d.trigger(&r.Trigger, &r.TriggerCgroup),
		Constraint:  event.ConstraintMemcg,
		OOM:         &event.OOMContext{GFPMask: r.GfpMask, GFP: d.gfpNames(r.GfpMask), Order: r.Order},
		VictimFound: &found,
		Victims:     &victims,
		Handled:     &handled,
		Stack:       d.stack(&r.Stack),
	}
	levels := levelsOf(r.Levels[:min(int(r.NrLevels), len(r.Levels))])
	if len(levels) > 0 {
		e.Memcg = d.memcg(cgroupPath(&r.MemcgCgroup), r.MemcgCgroup.Truncated != 0, levels[0])
		e.OOM.DomainBytes = e.Memcg.LimitBytes
	}
	return e
}

func (d *Decoder) allocFailure(r *bpf.OomtraceAllocFailureEvent) *event.Event {
	trig := d.trigger(&r.Trigger, &r.TriggerCgroup)
	source := "warn_alloc"
	if bpf.OomtraceAllocSource(r.Source) == bpf.OomtraceAllocSourceALLOC_SOURCE_MM_PAGE_ALLOC {
		source = "mm_page_alloc"
	}
	a := d.alloc(r.Order, r.GfpMask, trig.Cgroup)
	a.Node, a.Source, a.CgroupID = r.Node, source, r.TriggerCgroup.Id
	return &event.Event{
		Event:   event.KindAllocFailure,
		Time:    d.BootToWall(r.Hdr.BootNs),
		Node:    d.Node,
		Trigger: trig,
		Alloc:   a,
		Stack:   d.stack(&r.Stack),
	}
}

// alloc is what the kernel's flags say of an allocation by a task in
// memory cgroup cgroup.
func (d *Decoder) alloc(order, mask uint32, cgroup string) *event.Alloc {
	a := &event.Alloc{Order: order, GFPMask: mask, GFP: d.gfpNames(mask)}
	if d.GFP != nil {
		a.NoWarn = mask&d.GFP.Bit("__GFP_NOWARN") != 0
		a.MemcgCharge = mask&d.GFP.Bit("__GFP_ACCOUNT") != 0 && cgroup != "/" && cgroup != ""
	}
	return a
}

func (d *Decoder) trigger(t *bpf.OomtraceTaskInfo, cg *bpf.OomtraceCgroupPath) *event.Trigger {
	return &event.Trigger{PID: t.Pid, TID: t.Tid, NSPID: t.NsPid, Comm: cString(t.Comm[:]), Cgroup: cgroupPath(cg), CgroupTruncated: cg.Truncated != 0}
}

// memcg describes the cgroup at path; truncated says path was cut (or
// derived from a cut path), so it is not whole.
func (d *Decoder) memcg(path string, truncated bool, l Level) *event.Memcg {
	return &event.Memcg{Path: path, PathTruncated: truncated, LimitBytes: d.bytes(l.MaxPages), UsageBytes: d.bytes(l.UsagePages), Failcnt: l.Failcnt}
}

func (d *Decoder) gfpNames(mask uint32) string {
	if d.GFP == nil {
		return fmt.Sprintf("%#x", mask)
	}
	return d.GFP.Names(mask)
}

func (d *Decoder) stack(s *bpf.OomtraceKernelStack) []string {
	n := min(int(s.Depth), len(s.Ips))
	if d.Symbols == nil {
		// No symbol table (kallsyms hidden): the bare addresses, which
		// the kernel's System.map still names.
		frames := make([]string, n)
		for i, ip := range s.Ips[:n] {
			frames[i] = fmt.Sprintf("0x%x", ip)
		}
		return frames
	}
	return d.Symbols.Stack(s.Ips[:n])
}

func constraintName(c uint32) string {
	switch c {
	case 1:
		return event.ConstraintCpuset
	case 2:
		return event.ConstraintMempolicy
	case 3:
		return event.ConstraintMemcg
	}
	return event.ConstraintGlobal
}

func levelsOf(ls []bpf.OomtraceMemcgLevel) []Level {
	out := make([]Level, len(ls))
	for i, l := range ls {
		out[i] = Level{CgroupID: l.CgroupId, UsagePages: l.UsagePages, MaxPages: l.MaxPages, Failcnt: l.Failcnt}
	}
	return out
}

// Level is one memory cgroup's page counter, in pages.
type Level struct {
	CgroupID                      uint64
	UsagePages, MaxPages, Failcnt uint64
}

// limitSlackPages is how far below its limit a cgroup still counts as at
// its limit: the largest charge that can fail is a PMD-sized folio (512
// pages on x86-64), and mark_victim runs after that charge was refused.
const limitSlackPages = 512

// unlimitedPages: limits at or above this many pages are "no limit". The
// kernel's PAGE_COUNTER_MAX is LONG_MAX / PAGE_SIZE, 2^51 with 4 KiB
// pages; this bound sits below it for page sizes up to 64 KiB.
const unlimitedPages = (1<<63 - 1) >> 16

// LimitLevel picks, from a victim's memcg and its ancestors (leaf first),
// the one whose limit fired: the nearest with a limit that usage has
// reached. The kernel charges leaf first and fails at the first level
// over its limit, so the nearest such level is the one that refused. No
// level at its limit means a global OOM.
func LimitLevel(levels []Level) (int, bool) {
	for i, l := range levels {
		if l.MaxPages >= unlimitedPages {
			continue
		}
		if l.UsagePages+limitSlackPages >= l.MaxPages {
			return i, true
		}
	}
	return 0, false
}

// AncestorPath returns the path of the cgroup up levels above path.
func AncestorPath(path string, up int) string {
	for ; up > 0 && path != "/"; up-- {
		i := strings.LastIndexByte(path, '/')
		if i <= 0 {
			return "/"
		}
		path = path[:i]
	}
	return path
}

func cgroupPath(p *bpf.OomtraceCgroupPath) string {
	n := min(int(p.Len), len(p.Path))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(p.Path[i])
	}
	return string(b)
}

func cString(s []int8) string {
	b := make([]byte, len(s))
	for i, c := range s {
		b[i] = byte(c)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// RecordBootNS is a record's kernel timestamp (CLOCK_BOOTTIME
// nanoseconds), read from its header alone; 0 for a record too short to
// have one.
func RecordBootNS(raw []byte) uint64 {
	if len(raw) < headerSize {
		return 0
	}
	var hdr bpf.OomtraceEventHeader
	binary.Decode(raw, binary.NativeEndian, &hdr)
	return hdr.BootNs
}
