// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/bpf"
	"github.com/oomtrace/oomtrace/internal/event"
)

const pageSize = 4096

var testEpoch = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func testDecoder() *Decoder {
	return &Decoder{PageSize: pageSize, Node: "node-1", BootToWall: func(ns uint64) time.Time {
		return testEpoch.Add(time.Duration(ns))
	}}
}

func setString(dst []int8, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
}

func setPath(p *bpf.OomtraceCgroupPath, s string) {
	setString(p.Path[:], s)
	p.Len = uint16(len(s))
}

// seed000Record is seed 000's kill as the BPF side records it: a 100 MiB
// stress worker killed at the pod's 123 MiB limit while another stress
// process allocated.
func seed000Record() bpf.OomtraceOomKillEvent {
	const pod = "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c"
	const ctr = pod + "/a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672"
	var r bpf.OomtraceOomKillEvent
	r.Hdr.BootNs = 1_500_000_123
	r.Hdr.Kind = uint32(bpf.OomtraceEventKindEVENT_OOM_KILL)
	r.Victim = bpf.OomtraceTaskInfo{Pid: 32308, Tid: 32308, NsPid: 12, Uid: 0, OomScoreAdj: 939}
	setString(r.Victim.Comm[:], "stress")
	r.Trigger = bpf.OomtraceTaskInfo{Pid: 32332, Tid: 32332, NsPid: 36, OomScoreAdj: 939}
	setString(r.Trigger.Comm[:], "stress")
	r.RssAnonPages = 99620 / 4
	r.RssFilePages = 192 / 4
	r.TotalVmPages = 27661
	r.PgtablesBytes = 253952
	r.NrLevels = 5
	unlimited := uint64(1<<63-1) / pageSize
	r.Levels[0] = bpf.OomtraceMemcgLevel{UsagePages: 30888, MaxPages: unlimited}            // container
	r.Levels[1] = bpf.OomtraceMemcgLevel{UsagePages: 31488, MaxPages: 31488, Failcnt: 3632} // pod: 123 MiB
	r.Levels[2] = bpf.OomtraceMemcgLevel{UsagePages: 40000, MaxPages: unlimited}            // burstable
	r.Levels[3] = bpf.OomtraceMemcgLevel{UsagePages: 50000, MaxPages: unlimited}            // kubepods
	r.Levels[4] = bpf.OomtraceMemcgLevel{UsagePages: 90000, MaxPages: unlimited}            // root
	setPath(&r.VictimCgroup, ctr)
	setPath(&r.TriggerCgroup, ctr)
	return r
}

func encode(t *testing.T, r any) []byte {
	t.Helper()
	b := make([]byte, binary.Size(r))
	if _, err := binary.Encode(b, binary.NativeEndian, r); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeOOMKill(t *testing.T) {
	r := seed000Record()
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if e.Event != event.KindOOMKill || e.Node != "node-1" || !e.Time.Equal(testEpoch.Add(1_500_000_123)) {
		t.Errorf("header: got event %q node %q time %v", e.Event, e.Node, e.Time)
	}
	v := e.Victim
	if v.PID != 32308 || v.NSPID != 12 || v.Comm != "stress" || v.OOMScoreAdj != 939 {
		t.Errorf("victim: %+v", v)
	}
	if v.RSS.AnonBytes != 99620<<10 || v.RSS.FileBytes != 192<<10 || v.TotalVMBytes != 27661*pageSize || v.PgtablesBytes != 253952 {
		t.Errorf("victim memory: %+v", v)
	}
	if !strings.HasSuffix(v.Cgroup, "/a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672") {
		t.Errorf("victim cgroup %q", v.Cgroup)
	}
	if e.Trigger.PID != 32332 || e.Trigger.Comm != "stress" || e.Trigger.Cgroup != v.Cgroup {
		t.Errorf("trigger: %+v", e.Trigger)
	}
	// The pod's limit fired, not the container's: the kernel's "killed as
	// a result of limit of /kubepods/burstable/podbc001ffa-...".
	want := event.Memcg{Path: "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c", LimitBytes: 128974848, UsageBytes: 128974848, Failcnt: 3632}
	if e.Constraint != event.ConstraintMemcg || e.Memcg == nil || *e.Memcg != want {
		t.Errorf("memcg: constraint %q, got %+v, want %+v", e.Constraint, e.Memcg, want)
	}
}

func TestDecodeVictimExiting(t *testing.T) {
	r := seed000Record()
	r.Hdr.Kind = uint32(bpf.OomtraceEventKindEVENT_OOM_VICTIM_EXITING)
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if e.Event != event.KindOOMVictimExiting {
		t.Errorf("event %q, want %q", e.Event, event.KindOOMVictimExiting)
	}
}

func TestDecodeGlobal(t *testing.T) {
	r := seed000Record()
	r.NrLevels = 1
	r.Levels[0] = bpf.OomtraceMemcgLevel{UsagePages: 5_000_000, MaxPages: uint64(1<<63-1) / pageSize}
	setPath(&r.VictimCgroup, "/")
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if e.Constraint != event.ConstraintGlobal || e.Memcg != nil || e.Victim.Cgroup != "/" {
		t.Errorf("got constraint %q memcg %+v cgroup %q, want global with no memcg", e.Constraint, e.Memcg, e.Victim.Cgroup)
	}
}

// The kernel's own constraint, seen by oom_kill_process, is what the event
// says: never overwritten by what the page counters suggest.
func TestDecodeKernelConstraint(t *testing.T) {
	const podID = 77 // kernfs id of the pod level, which is at its limit
	for _, tc := range []struct {
		name       string
		constraint uint32 // enum oom_constraint
		memcgID    uint64
		want       string
		wantMemcg  string // path of the memcg object; "" for none
	}{
		{"memcg at the pod", 3, podID, event.ConstraintMemcg, "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c"},
		{"cpuset, victim's pod near its limit", 1, 0, event.ConstraintCpuset, ""},
		{"mempolicy, victim's pod near its limit", 2, 0, event.ConstraintMempolicy, ""},
		{"global, victim's pod near its limit", 0, 0, event.ConstraintGlobal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := seed000Record()
			r.Levels[1].CgroupId = podID
			r.Oom = bpf.OomtraceOomContext{Valid: 1, OomId: 9, Constraint: tc.constraint, MemcgId: tc.memcgID, Totalpages: 31488}
			e, err := testDecoder().Decode(encode(t, &r))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if e.Memcg != nil {
				got = e.Memcg.Path
			}
			if e.Constraint != tc.want || got != tc.wantMemcg {
				t.Errorf("constraint %q memcg %q, want %q memcg %q", e.Constraint, got, tc.want, tc.wantMemcg)
			}
		})
	}
}

// Without oom_kill_process (tracepoint tier) a level at its limit is the
// OOM's only if the trigger charged into it.
func TestDecodeInferredConstraint(t *testing.T) {
	for _, tc := range []struct {
		name, trigger string
		want          string
	}{
		{"trigger in the same container", "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672", event.ConstraintMemcg},
		{"trigger in a sibling container of the pod", "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/other", event.ConstraintMemcg},
		{"trigger in another pod", "/kubepods/besteffort/pod1", event.ConstraintGlobal},
		{"trigger in a cgroup whose name extends the pod's", "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c-x", event.ConstraintGlobal},
		{"trigger at the root", "/", event.ConstraintGlobal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := seed000Record()
			setPath(&r.TriggerCgroup, tc.trigger)
			e, err := testDecoder().Decode(encode(t, &r))
			if err != nil {
				t.Fatal(err)
			}
			if e.Constraint != tc.want || (e.Memcg != nil) != (tc.want == event.ConstraintMemcg) {
				t.Errorf("constraint %q memcg %+v, want %q", e.Constraint, e.Memcg, tc.want)
			}
		})
	}
}

// A cut path is said to be cut wherever it, or a path derived from it,
// appears: the victim's, the trigger's and the memcg's.
func TestDecodeCutPathsSaySo(t *testing.T) {
	r := seed000Record()
	r.VictimCgroup.Truncated, r.TriggerCgroup.Truncated = 1, 1
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Victim.CgroupTruncated || !e.Trigger.CgroupTruncated || e.Memcg == nil || !e.Memcg.PathTruncated {
		t.Errorf("victim %v trigger %v memcg %+v: want every path marked cut", e.Victim.CgroupTruncated, e.Trigger.CgroupTruncated, e.Memcg)
	}

	m := memcgOOMRecord()
	m.MemcgCgroup.Truncated, m.TriggerCgroup.Truncated = 1, 1
	e, err = testDecoder().Decode(encode(t, &m))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Trigger.CgroupTruncated || e.Memcg == nil || !e.Memcg.PathTruncated {
		t.Errorf("memcg_oom: trigger %v memcg %+v: want both marked cut", e.Trigger.CgroupTruncated, e.Memcg)
	}
}

func memcgOOMRecord() bpf.OomtraceMemcgOomEvent {
	var r bpf.OomtraceMemcgOomEvent
	r.Hdr.Kind = uint32(bpf.OomtraceEventKindEVENT_MEMCG_OOM)
	r.NrLevels = 1
	r.Levels[0] = bpf.OomtraceMemcgLevel{UsagePages: 8192, MaxPages: 8192}
	setPath(&r.MemcgCgroup, "/l2/l3")
	setPath(&r.TriggerCgroup, "/l2/l3/l4")
	return r
}

func TestDecodeBadInput(t *testing.T) {
	r := seed000Record()
	full := encode(t, &r)
	for _, tc := range []struct {
		name, raw, wantErr string
	}{
		{"empty", "", "want at least a 16-byte header"},
		{"header only", string(full[:16]), "oom_kill record of 16 bytes: want"},
		{"truncated", string(full[:len(full)-1]), "want"},
		{"unknown kind", string(append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0}, full[12:]...)), "record kind 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testDecoder().Decode([]byte(tc.raw))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeHostileStrings(t *testing.T) {
	r := seed000Record()
	// comm fills all 16 bytes with no NUL; bytes are not UTF-8.
	for i := range r.Victim.Comm {
		r.Victim.Comm[i] = int8(-1)
	}
	r.VictimCgroup.Len = 65535 // longer than the buffer
	r.VictimCgroup.Truncated = 1
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Victim.Comm) != 16 {
		t.Errorf("comm of %d bytes, want 16", len(e.Victim.Comm))
	}
	if len(e.Victim.Cgroup) != len(r.VictimCgroup.Path) || !e.Victim.CgroupTruncated {
		t.Errorf("cgroup of %d bytes (truncated %v), want it cut at the buffer's %d and said so", len(e.Victim.Cgroup), e.Victim.CgroupTruncated, len(r.VictimCgroup.Path))
	}
}

func TestLimitLevel(t *testing.T) {
	unl := uint64(1<<63-1) / pageSize
	for _, tc := range []struct {
		name   string
		levels []Level
		want   int
		ok     bool
	}{
		{"container at its limit", []Level{{UsagePages: 16384, MaxPages: 16384}, {UsagePages: 16400, MaxPages: 65536}, {MaxPages: unl}}, 0, true},
		{"pod limit, container unlimited", []Level{{UsagePages: 100, MaxPages: unl}, {UsagePages: 31488, MaxPages: 31488}}, 1, true},
		{"container limited but below, pod at limit", []Level{{UsagePages: 20000, MaxPages: 30000}, {UsagePages: 31400, MaxPages: 31488}}, 1, true},
		{"within a PMD folio of the limit", []Level{{UsagePages: 16384 - 512, MaxPages: 16384}}, 0, true},
		{"just beyond a PMD folio of the limit", []Level{{UsagePages: 16384 - 513, MaxPages: 16384}}, 0, false},
		{"both at limit: nearest wins", []Level{{UsagePages: 16384, MaxPages: 16384}, {UsagePages: 16390, MaxPages: 16390}}, 0, true},
		{"global: nothing at a limit", []Level{{UsagePages: 100, MaxPages: unl}, {UsagePages: 6_000_000, MaxPages: unl}}, 0, false},
		{"unlimited is never at its limit", []Level{{UsagePages: 9223372036854771712 / pageSize, MaxPages: 9223372036854771712 / pageSize}}, 0, false},
		{"no levels", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := LimitLevel(tc.levels)
			if got != tc.want || ok != tc.ok {
				t.Errorf("LimitLevel = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAncestorPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		up   int
		want string
	}{
		{"/a/b/c", 0, "/a/b/c"},
		{"/a/b/c", 1, "/a/b"},
		{"/a/b/c", 3, "/"},
		{"/a/b/c", 7, "/"},
		{"/", 1, "/"},
	} {
		if got := AncestorPath(tc.path, tc.up); got != tc.want {
			t.Errorf("AncestorPath(%q, %d) = %q, want %q", tc.path, tc.up, got, tc.want)
		}
	}
}

// FuzzDecode: random bytes give an error, never a panic; and whatever a
// record holds, its event encodes to one line of valid JSON.
func FuzzDecode(f *testing.F) {
	t := &testing.T{}
	kill := seed000Record()
	f.Add(encode(t, &kill))
	exiting := seed000Record()
	exiting.Hdr.Kind = uint32(bpf.OomtraceEventKindEVENT_OOM_VICTIM_EXITING)
	f.Add(encode(t, &exiting))
	hostile := seed000Record()
	setString(hostile.Victim.Comm[:], "a\"\x1b[31m\n\xff")
	setPath(&hostile.VictimCgroup, "/x\u202e\r\x80")
	hostile.TriggerCgroup.Len = 65535
	f.Add(encode(t, &hostile))
	memcg := memcgOOMRecord()
	f.Add(encode(t, &memcg))
	var alloc bpf.OomtraceAllocFailureEvent
	alloc.Hdr.Kind = uint32(bpf.OomtraceEventKindEVENT_ALLOC_FAILURE)
	alloc.Order, alloc.GfpMask = 9, 0x346cca
	f.Add(encode(t, &alloc))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := testDecoder().Decode(raw)
		if err != nil {
			return
		}
		if e == nil {
			t.Fatal("no event and no error")
		}
		buf, err := event.EncodeLine(e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		defer buf.Free()
		line := buf.Bytes()
		if bytes.IndexByte(line, '\n') != len(line)-1 || !json.Valid(line) {
			t.Fatalf("decoded event is not one line of JSON: %q", line)
		}
	})
}

// Tracepoint tier: a group kill's later members, marked after the first
// victim's memory was freed, keep the OOM's inferred constraint (seen in
// the kernel matrix: a member reported as global in a memcg OOM).
func TestDecodeGroupKillMembersShareInferredConstraint(t *testing.T) {
	d := testDecoder()
	first := seed000Record()
	first.Oom.OomId, first.Oom.GroupKill = 7, 1
	member := first
	member.Victim.Pid, member.Victim.Tid = 32309, 32309
	member.Levels[1].UsagePages = 20000 // the pod's usage after the first victim's memory went
	other := member
	other.Oom.OomId = 8
	var got []*event.Event
	for _, r := range []bpf.OomtraceOomKillEvent{first, member, other} {
		e, err := d.Decode(encode(t, &r))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if got[0].Constraint != event.ConstraintMemcg || got[1].Constraint != event.ConstraintMemcg || got[1].Memcg == nil || *got[1].Memcg != *got[0].Memcg || got[1].Memcg == got[0].Memcg {
		t.Errorf("member: constraint %q memcg %+v; want the first victim's memcg %+v, as a copy", got[1].Constraint, got[1].Memcg, got[0].Memcg)
	}
	if got[2].Constraint != event.ConstraintGlobal || got[2].Memcg != nil {
		t.Errorf("a kill of another OOM: constraint %q memcg %+v, want its own inference (global)", got[2].Constraint, got[2].Memcg)
	}
}

// Without a symbol table (kallsyms hidden) a stack is still reported, as
// the bare addresses, innermost first.
func TestDecodeStackWithoutSymbols(t *testing.T) {
	r := seed000Record()
	r.Stack.Depth = 2
	r.Stack.Ips[0], r.Stack.Ips[1] = 0xffffffff81234567, 0xffffffff8100abcd
	e, err := testDecoder().Decode(encode(t, &r))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0xffffffff81234567", "0xffffffff8100abcd"}; !slices.Equal(e.Stack, want) {
		t.Errorf("stack %q, want %q", e.Stack, want)
	}
}
