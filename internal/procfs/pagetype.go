// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ZoneType is one line of /proc/pagetypeinfo's table of free blocks: a
// zone's free blocks per order, of one migrate type. buddyinfo sums the
// types; an allocation can only use some of them (UsableBy), so a zone
// can list free blocks of an order that a failed allocation of that order
// could not have had: on arm64, the 64 MiB CMA area of Debian's kernels,
// free but kept for movable pages.
type ZoneType struct {
	Node int
	Zone string // "DMA", "Normal", ...
	Type string // "Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"
	// Free[order] is the number of free blocks of 2^order pages.
	Free []uint64
}

// ReadPageTypeInfo reads /proc/pagetypeinfo (root only since Linux 5.6).
func ReadPageTypeInfo() ([]ZoneType, error) {
	path := filepath.Join(procRoot, "pagetypeinfo")
	data, err := readProcFile(path)
	if err != nil {
		return nil, err // the *PathError names the file
	}
	types, err := ParsePageTypeInfo(strings.NewReader(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return types, nil
}

// ParsePageTypeInfo parses the table of free blocks of /proc/pagetypeinfo:
//
//	Node    0, zone      DMA, type    Unmovable      0      1      1 ...
//
// Its other lines (the headings, the table of pageblocks per type, whose
// lines have no "type") are skipped. A line that starts as a free-block
// line and does not go on as one is an error naming the line.
func ParsePageTypeInfo(r io.Reader) ([]ZoneType, error) {
	var out []ZoneType
	sc := newScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "Node" || f[4] != "type" {
			continue
		}
		zt, err := parsePageTypeLine(f)
		if err != nil {
			return nil, fmt.Errorf("pagetypeinfo line %d %s: %w", n, excerpt(line), err)
		}
		out = append(out, zt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pagetypeinfo: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New(`pagetypeinfo: no free-block lines ("Node <n>, zone <name>, type <type> <free blocks of order 0> ...")`)
	}
	return out, nil
}

const pageTypeForm = `expected "Node <n>, zone <name>, type <type> <free blocks of order 0> <order 1> ..."`

func parsePageTypeLine(f []string) (ZoneType, error) {
	nodeText, ok1 := strings.CutSuffix(f[1], ",")
	zone, ok2 := strings.CutSuffix(f[3], ",")
	if !ok1 || !ok2 || f[2] != "zone" || len(f) < 7 {
		return ZoneType{}, errors.New(pageTypeForm)
	}
	node, err := strconv.Atoi(nodeText)
	if err != nil || node < 0 {
		return ZoneType{}, fmt.Errorf("node number %s: expected a non-negative integer", excerpt(nodeText))
	}
	zt := ZoneType{Node: node, Zone: zone, Type: f[5], Free: make([]uint64, len(f)-6)}
	for order, s := range f[6:] {
		// The kernel stops counting a list at 100,000 blocks, under the
		// zone's lock, and prints ">100000": at least that many.
		v, err := strconv.ParseUint(strings.TrimPrefix(s, ">"), 10, 64)
		if err != nil {
			return ZoneType{}, fmt.Errorf("zone %.80s, type %.80s: free blocks of order %d: %s: expected an unsigned integer", zone, zt.Type, order, excerpt(s))
		}
		zt.Free[order] = v
	}
	return zt, nil
}

// UsableBy says whether free blocks of migrate type typ can serve an
// allocation: CMA blocks only a movable one (__GFP_MOVABLE), the
// high-order atomic reserve only one that cannot sleep (no
// __GFP_DIRECT_RECLAIM), isolated blocks (being offlined or taken for
// CMA) none. Any other type can be taken over by any allocation.
func UsableBy(typ string, movable, atomic bool) bool {
	switch typ {
	case "CMA":
		return movable
	case "HighAtomic":
		return atomic
	case "Isolate":
		return false
	}
	return true
}

// WithoutTypes returns buddyinfo's zones with the free blocks of the
// migrate types drop names taken away: what is left is what an allocation
// could use. buddyinfo's counts are exact and pagetypeinfo's stop at
// 100,000 a list, so the counts start from buddyinfo and what is taken
// away (CMA, a reserve: small) is at most what pagetypeinfo says.
func WithoutTypes(zones []Zone, types []ZoneType, drop func(typ string) bool) []Zone {
	out := make([]Zone, len(zones))
	for i, z := range zones {
		free := slices.Clone(z.Free)
		for _, zt := range types {
			if zt.Node != z.Node || zt.Zone != z.Zone || !drop(zt.Type) {
				continue
			}
			for o := range min(len(free), len(zt.Free)) {
				free[o] -= min(free[o], zt.Free[o])
			}
		}
		out[i] = Zone{Node: z.Node, Zone: z.Zone, Free: free}
	}
	return out
}
