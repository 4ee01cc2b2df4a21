// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"slices"
	"strings"
	"testing"
)

// The shape of an arm64 guest's /proc/pagetypeinfo (Debian 6.12, 384 MiB,
// 64 MiB of CMA) when an order-6 allocation failed: the only free blocks
// of order 6 or more are CMA's, which buddyinfo lists with the rest.
const pageTypeCMA = `Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 
Node    0, zone      DMA, type    Unmovable    120     30      4      1      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Movable  27000    280     38     34     24     19      0      0      0      0      0 
Node    0, zone      DMA, type  Reclaimable     31      7      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type          CMA    300      0      0      0      0      0      1      1      0      1      0 
Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate 
Node 0, zone      DMA           20          140            4            0           32            0 
`

func TestParsePageTypeInfoCMA(t *testing.T) {
	types, err := ParsePageTypeInfo(strings.NewReader(pageTypeCMA))
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != 6 || types[4].Type != "CMA" || types[4].Zone != "DMA" || !slices.Equal(types[4].Free, []uint64{300, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0}) {
		t.Fatalf("parsed %+v: want the 6 free-block lines of zone DMA, CMA's fifth", types)
	}
	const page = 4096
	all := sumTypes(types) // what buddyinfo says
	unmovable := WithoutTypes(all, types, func(typ string) bool { return !UsableBy(typ, false, false) })
	// What buddyinfo shows: 2.8 MiB in blocks of order 6 or more.
	if got := FreeBytesAtOrAbove(all, 6, page); got != (1<<6+1<<7+1<<9)*page {
		t.Errorf("all types: %d bytes at or above order 6, want the CMA blocks' %d", got, (1<<6+1<<7+1<<9)*page)
	}
	// What an unmovable order-6 allocation could have had: none.
	if got := FreeBytesAtOrAbove(unmovable, 6, page); got != 0 {
		t.Errorf("usable by an unmovable allocation: %d bytes at or above order 6, want 0", got)
	}
	if got, want := FreeBytes(unmovable, page), FreeBytes(all, page)-(300+1<<6+1<<7+1<<9)*page; got != want {
		t.Errorf("usable by an unmovable allocation: %d bytes free, want all but CMA's, %d", got, want)
	}
	if movable := WithoutTypes(all, types, func(typ string) bool { return !UsableBy(typ, true, false) }); FreeBytesAtOrAbove(movable, 6, page) == 0 {
		t.Error("a movable allocation may use CMA's blocks: want them counted")
	}
}

func TestUsableBy(t *testing.T) {
	for _, c := range []struct {
		typ             string
		movable, atomic bool
		want            bool
	}{
		{"Unmovable", false, false, true},
		{"Movable", false, false, true}, // taken over (fallback)
		{"Reclaimable", false, true, true},
		{"CMA", false, false, false},
		{"CMA", true, false, true},
		{"HighAtomic", false, false, false},
		{"HighAtomic", false, true, true},
		{"Isolate", true, true, false},
	} {
		if got := UsableBy(c.typ, c.movable, c.atomic); got != c.want {
			t.Errorf("UsableBy(%q, movable %v, atomic %v) = %v, want %v", c.typ, c.movable, c.atomic, got, c.want)
		}
	}
}

func TestParsePageTypeInfoErrors(t *testing.T) {
	for _, text := range []string{
		"Node    0, zone      DMA, type    Unmovable      0     x1\n",
		"Node    0 zone      DMA, type    Unmovable      0      1\n",
		"Node   -1, zone      DMA, type    Unmovable      0      1\n",
		"Page block order: 9\n", // no table at all
	} {
		_, err := ParsePageTypeInfo(strings.NewReader(text))
		if err == nil || !strings.Contains(err.Error(), "pagetypeinfo") {
			t.Errorf("%q: error %v, want one naming pagetypeinfo and the line", text, err)
		}
	}
}

// This machine's own file parses, and its types add up to buddyinfo.
func TestReadPageTypeInfoThisMachine(t *testing.T) {
	types, err := ReadPageTypeInfo()
	if err != nil {
		t.Skipf("/proc/pagetypeinfo: %v (root only since Linux 5.6)", err)
	}
	zones, err := ReadBuddyInfo()
	if err != nil {
		t.Fatal(err)
	}
	// Both files are read a moment apart on a live machine: the totals
	// agree within what moves in between.
	all, buddy := FreeBytes(sumTypes(types), 4096), FreeBytes(zones, 4096)
	if diff := max(all, buddy) - min(all, buddy); diff > buddy/10 {
		t.Errorf("pagetypeinfo's types add up to %d bytes free, buddyinfo says %d", all, buddy)
	}
}

func FuzzParsePageTypeInfo(f *testing.F) {
	for _, s := range []string{
		pageTypeCMA, "", "Node 0, zone DMA, type CMA 1", "Node 0, zone DMA, type CMA",
		"Node 0, zone DMA, type CMA 18446744073709551615 18446744073709551615",
		"Node 0 zone DMA, type CMA 1 2", "Node 0, zone DMA type CMA 1", "Node ,, zone ,, type , ,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		types, err := ParsePageTypeInfo(strings.NewReader(s))
		if err != nil {
			if n := len(err.Error()); n == 0 || n > 1000 {
				t.Fatalf("error of %d bytes: %.200q", n, err)
			}
			return
		}
		for _, zt := range types {
			if zt.Node < 0 || zt.Type == "" || len(zt.Free) == 0 {
				t.Fatalf("accepted a line without node, type or counts: %+v", zt)
			}
		}
		all := sumTypes(types)
		some := WithoutTypes(all, types, func(typ string) bool { return !UsableBy(typ, false, false) })
		for o := 0; o < 70; o++ {
			if a, b := FreeBytesAtOrAbove(all, o, 4096), FreeBytesAtOrAbove(some, o, 4096); b > a {
				t.Fatalf("order %d: %d bytes usable of %d free", o, b, a)
			}
		}
	})
}

// sumTypes adds up each zone's types, as buddyinfo does.
func sumTypes(types []ZoneType) []Zone {
	var zones []Zone
	for _, zt := range types {
		i := slices.IndexFunc(zones, func(z Zone) bool { return z.Node == zt.Node && z.Zone == zt.Zone })
		if i < 0 {
			i = len(zones)
			zones = append(zones, Zone{Node: zt.Node, Zone: zt.Zone})
		}
		for len(zones[i].Free) < len(zt.Free) {
			zones[i].Free = append(zones[i].Free, 0)
		}
		for o, n := range zt.Free {
			zones[i].Free[o] = addSat(zones[i].Free[o], n)
		}
	}
	return zones
}

// A list the kernel stopped counting (">100000") parses as at least that
// many; taking away more than buddyinfo has leaves none, not a wrap.
func TestPageTypeInfoCappedCount(t *testing.T) {
	types, err := ParsePageTypeInfo(strings.NewReader("Node    0, zone   Normal, type          CMA >100000      2\n"))
	if err != nil || len(types) != 1 || types[0].Free[0] != 100000 {
		t.Fatalf("parsed %+v, %v: want 100000 blocks of order 0", types, err)
	}
	buddy := []Zone{{Node: 0, Zone: "Normal", Free: []uint64{5000, 7}}}
	got := WithoutTypes(buddy, types, func(string) bool { return true })
	if !slices.Equal(got[0].Free, []uint64{0, 5}) || buddy[0].Free[0] != 5000 {
		t.Errorf("without CMA: %v (buddyinfo now %v), want [0 5] and buddyinfo untouched", got[0].Free, buddy[0].Free)
	}
}
