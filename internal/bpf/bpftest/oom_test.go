// SPDX-License-Identifier: Apache-2.0

package bpftest

import (
	"errors"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// A mark on the tracepoint tier: the thread that triggered the OOM, the
// memcg OOMs counted along the victim's cgroups, and when.
type mark struct {
	name string
	tid  uint32
	ooms uint64
	at   time.Duration // since boot
	// sameAs names the earlier mark whose OOM this one belongs to; empty
	// means a new OOM.
	sameAs string
}

func TestTracepointOOMGrouping(t *testing.T) {
	objs := load(t)
	const window = 100 * time.Millisecond // GROUP_MARK_WINDOW_NS
	marks := []mark{
		{name: "first", tid: 100, ooms: 5, at: time.Second},
		{name: "group member", tid: 100, ooms: 5, at: time.Second + 50*time.Millisecond, sameAs: "first"},
		{name: "same thread and count, window passed", tid: 100, ooms: 5, at: time.Second + 50*time.Millisecond + window + 1},
		{name: "another thread", tid: 101, ooms: 5, at: 2 * time.Second},
		{name: "same thread, OOM count rose", tid: 101, ooms: 6, at: 2*time.Second + time.Millisecond},
		{name: "its group member", tid: 101, ooms: 6, at: 2*time.Second + 2*time.Millisecond, sameAs: "same thread, OOM count rose"},
		{name: "window counted from the last mark", tid: 101, ooms: 6, at: 2*time.Second + 2*time.Millisecond + window, sameAs: "same thread, OOM count rose"},
	}
	ids := map[string]uint64{}
	seen := map[uint64]string{}
	for _, m := range marks {
		run(t, objs.GroupMark, uint64(m.tid), m.ooms, uint64(m.at))
		var id uint64
		if err := objs.OomIdSeen.Get(&id); err != nil {
			t.Fatal(err)
		}
		ids[m.name] = id
		switch {
		case id == 0:
			t.Errorf("%s: oom_id 0", m.name)
		case m.sameAs != "" && id != ids[m.sameAs]:
			t.Errorf("%s: oom_id %#x, want %#x (%s)", m.name, id, ids[m.sameAs], m.sameAs)
		case m.sameAs == "" && seen[id] != "":
			t.Errorf("%s: oom_id %#x already given to %q, want a new one", m.name, id, seen[id])
		}
		if seen[id] == "" {
			seen[id] = m.name
		}
	}

	var last HelpersLastMark
	if err := objs.LastMark.Lookup(uint32(0), &last); err != nil {
		t.Fatal(err)
	}
	final := marks[len(marks)-1]
	if last.Tid != final.tid || last.OomEvents != final.ooms || last.BootNs != uint64(final.at) || last.OomId != ids[final.name] {
		t.Errorf("last_mark %+v, want tid %d, oom_events %d, boot_ns %d, oom_id %#x", last, final.tid, final.ooms, uint64(final.at), ids[final.name])
	}
}

func TestOOMKillCounted(t *testing.T) {
	const memcg, other = 4242, 77
	type call struct {
		kills      uint64 // memory_events_local[MEMCG_OOM_KILL] at the mark
		wantKilled bool
		wantSeen   uint64 // oom_kills_seen[memcg] afterwards; 0: no entry
	}
	for _, tc := range []struct {
		name  string
		seed  map[uint64]uint64 // what user space seeds before load
		calls []call
	}{
		{name: "first kill in a memcg without kills before", calls: []call{{kills: 1, wantKilled: true, wantSeen: 1}}},
		{name: "no kill counted in a memcg without kills: victim exiting", calls: []call{{kills: 0, wantKilled: false}}},
		{name: "seeded, counter rose", seed: map[uint64]uint64{memcg: 3}, calls: []call{{kills: 4, wantKilled: true, wantSeen: 4}}},
		{name: "seeded, counter did not rise", seed: map[uint64]uint64{memcg: 3}, calls: []call{{kills: 3, wantKilled: false, wantSeen: 3}}},
		{name: "a second mark without a new kill", seed: map[uint64]uint64{memcg: 3}, calls: []call{
			{kills: 4, wantKilled: true, wantSeen: 4},
			{kills: 4, wantKilled: false, wantSeen: 4},
			{kills: 5, wantKilled: true, wantSeen: 5},
		}},
		{name: "another memcg's count does not count", seed: map[uint64]uint64{other: 9}, calls: []call{{kills: 1, wantKilled: true, wantSeen: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := load(t)
			for id, n := range tc.seed {
				if err := objs.OomKillsSeen.Put(id, n); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range tc.calls {
				killed := run(t, objs.CountKill, memcg, c.kills) != 0
				if killed != c.wantKilled {
					t.Errorf("call %d (kills %d): killed %v, want %v", i, c.kills, killed, c.wantKilled)
				}
				var got uint64
				err := objs.OomKillsSeen.Lookup(uint64(memcg), &got)
				if errors.Is(err, ebpf.ErrKeyNotExist) {
					err, got = nil, 0
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != c.wantSeen {
					t.Errorf("call %d (kills %d): oom_kills_seen %d, want %d", i, c.kills, got, c.wantSeen)
				}
			}
			for id, n := range tc.seed {
				var got uint64
				if id != memcg && (objs.OomKillsSeen.Lookup(id, &got) != nil || got != n) {
					t.Errorf("oom_kills_seen[%d] = %d, want it left at %d", id, got, n)
				}
			}
		})
	}
}
