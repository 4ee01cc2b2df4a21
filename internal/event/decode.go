// SPDX-License-Identifier: Apache-2.0

package event

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/oomtrace/oomtrace/internal/bpf"
)

// Decoder turns ring buffer records into events.
type Decoder struct {
	PageSize uint64
	Node     string
	// BootToWall converts CLOCK_BOOTTIME nanoseconds to wall-clock time.
	BootToWall func(bootNS uint64) time.Time
}

var (
	headerSize  = binary.Size(bpf.OomkillEventHeader{})
	oomKillSize = binary.Size(bpf.OomkillOomKillEvent{})
)

// Decode decodes one record. It never panics on bad input: a short or
// unknown record is an error naming what was expected.
func (d *Decoder) Decode(raw []byte) (*Event, error) {
	var hdr bpf.OomkillEventHeader
	if _, err := binary.Decode(raw, binary.NativeEndian, &hdr); err != nil {
		return nil, fmt.Errorf("record of %d bytes: want at least a %d-byte header", len(raw), headerSize)
	}
	switch bpf.OomkillEventKind(hdr.Kind) {
	case bpf.OomkillEventKindEVENT_OOM_KILL, bpf.OomkillEventKindEVENT_OOM_VICTIM_EXITING:
		var rec bpf.OomkillOomKillEvent
		if _, err := binary.Decode(raw, binary.NativeEndian, &rec); err != nil {
			return nil, fmt.Errorf("oom_kill record of %d bytes: want %d", len(raw), oomKillSize)
		}
		return d.oomKill(&rec), nil
	}
	return nil, fmt.Errorf("record kind %d: want one of %d (oom_kill), %d (oom_victim_exiting)",
		hdr.Kind, bpf.OomkillEventKindEVENT_OOM_KILL, bpf.OomkillEventKindEVENT_OOM_VICTIM_EXITING)
}

func (d *Decoder) oomKill(r *bpf.OomkillOomKillEvent) *Event {
	pages := func(n uint64) uint64 { return n * d.PageSize }
	victimCgroup := cgroupPath(&r.VictimCgroup)
	e := &Event{
		Event: KindOOMKill,
		Time:  d.BootToWall(r.Hdr.BootNs),
		Node:  d.Node,
		Victim: &Victim{
			PID:         r.Victim.Pid,
			TID:         r.Victim.Tid,
			NSPID:       r.Victim.NsPid,
			Comm:        cString(r.Victim.Comm[:]),
			UID:         r.Victim.Uid,
			OOMScoreAdj: r.Victim.OomScoreAdj,
			Cgroup:      victimCgroup,
			RSS: RSS{
				AnonBytes:  pages(r.RssAnonPages),
				FileBytes:  pages(r.RssFilePages),
				ShmemBytes: pages(r.RssShmemPages),
			},
			SwapBytes:     pages(r.SwapEntries),
			TotalVMBytes:  pages(r.TotalVmPages),
			PgtablesBytes: r.PgtablesBytes,
		},
		Trigger: &Trigger{
			PID:    r.Trigger.Pid,
			TID:    r.Trigger.Tid,
			NSPID:  r.Trigger.NsPid,
			Comm:   cString(r.Trigger.Comm[:]),
			Cgroup: cgroupPath(&r.TriggerCgroup),
		},
		Constraint: ConstraintGlobal,
	}
	if bpf.OomkillEventKind(r.Hdr.Kind) == bpf.OomkillEventKindEVENT_OOM_VICTIM_EXITING {
		e.Event = KindOOMVictimExiting
	}

	levels := make([]Level, 0, len(r.Levels))
	for _, l := range r.Levels[:min(int(r.NrLevels), len(r.Levels))] {
		levels = append(levels, Level{UsagePages: l.UsagePages, MaxPages: l.MaxPages, Failcnt: l.Failcnt})
	}
	if i, ok := LimitLevel(levels); ok {
		l := levels[i]
		e.Constraint = ConstraintMemcg
		e.Memcg = &Memcg{
			Path:       AncestorPath(victimCgroup, i),
			LimitBytes: pages(l.MaxPages),
			UsageBytes: pages(l.UsagePages),
			Failcnt:    l.Failcnt,
		}
	}
	return e
}

// Level is one memory cgroup's page counter, in pages.
type Level struct {
	UsagePages, MaxPages, Failcnt uint64
}

// limitSlackPages is how far below its limit a cgroup still counts as at
// its limit: the largest charge that can fail is a PMD-sized folio (512
// pages on x86-64), and mark_victim runs after that charge was refused.
const limitSlackPages = 512

// unlimitedPages is the page counter's "no limit" (PAGE_COUNTER_MAX on
// 64-bit: LONG_MAX / PAGE_SIZE for 4 KiB pages, and larger for smaller).
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

func cgroupPath(p *bpf.OomkillCgroupPath) string {
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
