// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// /proc/buddyinfo of a 3.10 node where an order-6 allocation (kmalloc of a
// memcg slab cache array, "page allocation failure: order:6") failed with
// ~400 MB free: DMA32 and Normal had nothing above order 3.
const buddyFailing = `Node 0, zone      DMA      1      0      0      1      2      1      1      0      1      1      3
Node 0, zone    DMA32   8409   8079   1340     74      6      0      0      0      0      0      0
Node 0, zone   Normal  40153  12774    302     17      0      0      0      0      0      0      0
`

// A healthy node of the same cluster, where containers still started.
const buddyHealthy = `Node 0, zone      DMA      1      0      0      1      2      1      1      0      1      1      3
Node 0, zone    DMA32    575   1361    326    105    159    533    203    124     47      0      0
Node 0, zone   Normal    108   1708    952   1064    957    690    285    145     12      1      0
`

// The failing node after echo 1 >/proc/sys/vm/compact_memory.
const buddyCompacted = `Node 0, zone      DMA      1      0      0      1      2      1      1      0      1      1      3
Node 0, zone    DMA32   6785   7725   1232    104      0      0      0      0      0      0      0
Node 0, zone   Normal  31163  14197   1102     88     27     22      1      0      0      0      0
`

// This machine (6.18), verbatim: the kernel ends each line with a space.
const buddyThisMachine = "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n" +
	"Node 0, zone    DMA32      2      3      0      2      3      2      1      4      4      2    752 \n" +
	"Node 0, zone   Normal  11941   6665   3764   2379   1460    787    459    195     65     78    322 \n"

func mustParseBuddy(t *testing.T, text string) []Zone {
	t.Helper()
	zones, err := ParseBuddyInfo(strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseBuddyInfo: %v", err)
	}
	return zones
}

func zoneNamed(t *testing.T, zones []Zone, name string) Zone {
	t.Helper()
	for _, z := range zones {
		if z.Zone == name {
			return z
		}
	}
	t.Fatalf("no zone %q in %v", name, zones)
	return Zone{}
}

func TestParseBuddyInfoFailingMachine(t *testing.T) {
	zones := mustParseBuddy(t, buddyFailing)
	want := []Zone{
		{Node: 0, Zone: "DMA", Free: []uint64{1, 0, 0, 1, 2, 1, 1, 0, 1, 1, 3}},
		{Node: 0, Zone: "DMA32", Free: []uint64{8409, 8079, 1340, 74, 6, 0, 0, 0, 0, 0, 0}},
		{Node: 0, Zone: "Normal", Free: []uint64{40153, 12774, 302, 17, 0, 0, 0, 0, 0, 0, 0}},
	}
	if !slices.EqualFunc(zones, want, func(a, b Zone) bool {
		return a.Node == b.Node && a.Zone == b.Zone && slices.Equal(a.Free, b.Free)
	}) {
		t.Fatalf("zones = %v, want %v", zones, want)
	}
}

// Totals worked out by hand, sum of Free[o] * 2^o pages of 4 KiB:
//
//	failing  DMA     3977 pages (15908 kB, as the kernel's own "Node 0 DMA: ... = 15908kB" line says)
//	         DMA32  30615 pages = 8409 + 8079*2 + 1340*4 + 74*8 + 6*16
//	         Normal 67045 pages = 40153 + 12774*2 + 302*4 + 17*8
//	         total 101637 pages = 416305152 bytes (397 MiB free)
//	         order >= 6: DMA 64+256+512+3*1024 = 3904 pages, DMA32 0, Normal 0
//	healthy  DMA32  65937 pages, 40896 of them in blocks of order >= 6
//	         Normal 93620 pages, 40384 of them in blocks of order >= 6
//	compacted Normal gains one order-6 block: 64 pages at or above order 6.
func TestFreeBytesSeeds(t *testing.T) {
	const page = 4096
	for _, tc := range []struct {
		name                    string
		text                    string
		total, atOrAbove6       uint64 // all zones, bytes
		dma32Above6, normAbove6 uint64 // bytes
	}{
		{"failing", buddyFailing, 101637 * page, 3904 * page, 0, 0},
		{"healthy", buddyHealthy, 163534 * page, 85184 * page, 40896 * page, 40384 * page},
		{"compacted", buddyCompacted, 97841 * page, 3968 * page, 0, 64 * page},
	} {
		t.Run(tc.name, func(t *testing.T) {
			zones := mustParseBuddy(t, tc.text)
			if got := FreeBytes(zones, page); got != tc.total {
				t.Errorf("FreeBytes = %d, want %d", got, tc.total)
			}
			if got := FreeBytesAtOrAbove(zones, 6, page); got != tc.atOrAbove6 {
				t.Errorf("FreeBytesAtOrAbove(6) = %d, want %d", got, tc.atOrAbove6)
			}
			dma32 := []Zone{zoneNamed(t, zones, "DMA32")}
			if got := FreeBytesAtOrAbove(dma32, 6, page); got != tc.dma32Above6 {
				t.Errorf("DMA32 FreeBytesAtOrAbove(6) = %d, want %d", got, tc.dma32Above6)
			}
			normal := []Zone{zoneNamed(t, zones, "Normal")}
			if got := FreeBytesAtOrAbove(normal, 6, page); got != tc.normAbove6 {
				t.Errorf("Normal FreeBytesAtOrAbove(6) = %d, want %d", got, tc.normAbove6)
			}
		})
	}

	// The DMA zone alone is what the kernel printed in the failure report.
	dma := []Zone{zoneNamed(t, mustParseBuddy(t, buddyFailing), "DMA")}
	if got := FreeBytes(dma, page); got != 15908*1024 {
		t.Errorf("DMA FreeBytes = %d, want %d (15908 kB)", got, 15908*1024)
	}
}

func TestFreeBytesEdges(t *testing.T) {
	zones := []Zone{{Zone: "Normal", Free: []uint64{1, 1, 1}}} // 1+2+4 pages
	for _, tc := range []struct {
		order int
		want  uint64
	}{
		{-3, 7 * 4096}, {0, 7 * 4096}, {1, 6 * 4096}, {2, 4 * 4096}, {3, 0}, {100, 0},
	} {
		if got := FreeBytesAtOrAbove(zones, tc.order, 4096); got != tc.want {
			t.Errorf("FreeBytesAtOrAbove(order %d) = %d, want %d", tc.order, got, tc.want)
		}
	}
	if got := FreeBytes(nil, 4096); got != 0 {
		t.Errorf("FreeBytes(nil) = %d, want 0", got)
	}
	if got := FreeBytes(zones, 0); got != 0 {
		t.Errorf("FreeBytes(pageSize 0) = %d, want 0", got)
	}
	// Absurd counts saturate instead of wrapping to a small number.
	huge := []Zone{{Zone: "Normal", Free: []uint64{math.MaxUint64 / 2, 0, 1 << 62}}}
	if got := FreeBytes(huge, 4096); got != math.MaxUint64 {
		t.Errorf("FreeBytes(huge) = %d, want saturation at MaxUint64", got)
	}
	long := Zone{Zone: "Normal", Free: make([]uint64, 70)}
	long.Free[69] = 1
	if got := FreeBytes([]Zone{long}, 1); got != math.MaxUint64 {
		t.Errorf("FreeBytes(order 69) = %d, want saturation at MaxUint64", got)
	}
}

func TestParseBuddyInfoThisMachineFormat(t *testing.T) {
	zones := mustParseBuddy(t, buddyThisMachine+"\n") // and a blank line
	if len(zones) != 3 {
		t.Fatalf("got %d zones, want 3", len(zones))
	}
	n := zoneNamed(t, zones, "Normal")
	if len(n.Free) != 11 || n.Free[0] != 11941 || n.Free[10] != 322 {
		t.Errorf("Normal = %v", n.Free)
	}
	// Other node numbers and zone names parse the same way.
	zones = mustParseBuddy(t, "Node 1, zone  Movable 3 2 1\nNode 12, zone Normal 0\n")
	if zones[0].Node != 1 || zones[0].Zone != "Movable" || !slices.Equal(zones[0].Free, []uint64{3, 2, 1}) ||
		zones[1].Node != 12 || len(zones[1].Free) != 1 {
		t.Errorf("zones = %v", zones)
	}
	if zones, err := ParseBuddyInfo(strings.NewReader("")); err != nil || len(zones) != 0 {
		t.Errorf("empty input: %v, %v", zones, err)
	}
}

func TestParseBuddyInfoMalformed(t *testing.T) {
	good := "Node 0, zone      DMA      1      0      0\n"
	for _, tc := range []struct {
		text string
		want []string // substrings of the error
	}{
		{"Node 0 zone DMA 1 2 3", []string{"line 1", "expected a comma"}},
		{good + "Node x, zone DMA 1 2 3", []string{"line 2", `node number "x"`, "non-negative integer"}},
		{"Node -1, zone DMA 1", []string{"line 1", "non-negative"}},
		{good + "Node 0, zone DMA", []string{"line 2", "expected \"Node <n>, zone <name>"}},
		{"Node 0, zone DMA32 1 2 x 4", []string{"line 1", "zone DMA32", "order 2", `"x"`, "unsigned integer"}},
		{"Node 0, zone DMA32 1 -2", []string{"order 1", `"-2"`}},
		{"Node 0, zone DMA32 1 99999999999999999999", []string{"order 1", "unsigned integer"}},
		{"Zone 0, node DMA 1 2", []string{"line 1", "expected"}},
		{"garbage", []string{"line 1", `"garbage"`}},
		{strings.Repeat("x", 500), []string{"line 1", `"...`}}, // long lines are cut short in the error
		{strings.Repeat("y", maxLine+1), []string{"buddyinfo", "too long"}},
	} {
		zones, err := ParseBuddyInfo(strings.NewReader(tc.text))
		if err == nil {
			t.Errorf("ParseBuddyInfo(%.40q) = %v, want an error", tc.text, zones)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseBuddyInfo(%.40q) error %q does not contain %q", tc.text, err, w)
			}
		}
		if len(err.Error()) > 400 {
			t.Errorf("error is %d bytes long", len(err.Error()))
		}
	}
}

// Live: this machine's /proc/buddyinfo.
func TestReadBuddyInfoLive(t *testing.T) {
	zones, err := ReadBuddyInfo()
	if err != nil {
		t.Skipf("skipped: %v", err) // no /proc, or a sandbox that hides it
	}
	if len(zones) == 0 {
		t.Fatal("no zones in /proc/buddyinfo")
	}
	orders := len(zones[0].Free)
	for _, z := range zones {
		if z.Zone == "" || len(z.Free) != orders {
			t.Errorf("zone %+v: want a name and %d orders like the first zone", z, orders)
		}
	}
	if orders < 10 {
		t.Errorf("%d orders; every kernel since 2.6 has at least MAX_ORDER 10", orders)
	}
	total := FreeBytes(zones, 4096)
	if total == 0 {
		t.Error("no free memory at all in /proc/buddyinfo")
	}
	prev := total
	for o := 0; o <= orders; o++ {
		v := FreeBytesAtOrAbove(zones, o, 4096)
		if v > prev {
			t.Errorf("FreeBytesAtOrAbove(%d) = %d > %d at the order below", o, v, prev)
		}
		prev = v
	}
	if prev != 0 {
		t.Errorf("FreeBytesAtOrAbove(%d) = %d, want 0 past the last order", orders, prev)
	}
	t.Logf("%d zones, %d orders, %d MiB free, %d MiB in blocks of order >= 6",
		len(zones), orders, total>>20, FreeBytesAtOrAbove(zones, 6, 4096)>>20)
}

func FuzzParseBuddyInfo(f *testing.F) {
	for _, s := range []string{
		buddyFailing, buddyHealthy, buddyCompacted, buddyThisMachine,
		"", "\n", "Node 0, zone DMA 1", "Node 0, zone DMA 18446744073709551615 18446744073709551615",
		"Node 0 zone DMA 1 2", "Node 0, zone DMA", "Node 0,, zone DMA 1", "Node ,, zone , ,",
		"Node \"" + strings.Repeat("\xf5", 60) + "\x88\x9d zone 0 0", // binary junk quotes 4x longer
		"Node 0, zone DMA 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		zones, err := ParseBuddyInfo(strings.NewReader(s))
		if err != nil {
			if n := len(err.Error()); n == 0 || n > 1000 {
				t.Fatalf("error of %d bytes: %.200q", n, err)
			}
			return
		}
		for _, z := range zones {
			if z.Node < 0 || z.Zone == "" || len(z.Free) == 0 {
				t.Fatalf("accepted a zone without node, name or counts: %+v", z)
			}
		}
		prev := FreeBytes(zones, 4096)
		if v := FreeBytesAtOrAbove(zones, 0, 4096); v != prev {
			t.Fatalf("FreeBytesAtOrAbove(0) = %d, FreeBytes = %d", v, prev)
		}
		for o := 1; o < 70; o++ {
			v := FreeBytesAtOrAbove(zones, o, 4096)
			if v > prev {
				t.Fatalf("FreeBytesAtOrAbove(%d) = %d grew from %d", o, v, prev)
			}
			prev = v
		}
	})
}
