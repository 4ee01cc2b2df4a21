// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"path/filepath"
	"strconv"
	"strings"
)

// Zone is one line of /proc/buddyinfo: free blocks per order.
type Zone struct {
	Node int
	Zone string // "DMA", "DMA32", "Normal", "Movable"
	// Free[order] is the number of free blocks of 2^order pages, for orders
	// 0..len(Free)-1 (11 orders on most kernels, more with a larger
	// MAX_PAGE_ORDER).
	Free []uint64
}

// ReadBuddyInfo reads /proc/buddyinfo.
func ReadBuddyInfo() ([]Zone, error) {
	path := filepath.Join(procRoot, "buddyinfo")
	data, err := readProcFile(path)
	if err != nil {
		return nil, err // the *PathError names the file
	}
	zones, err := ParseBuddyInfo(strings.NewReader(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return zones, nil
}

// ParseBuddyInfo parses the text of /proc/buddyinfo, one zone a line:
//
//	Node 0, zone    DMA32   8409   8079   1340     74      6      0 ...
//
// Blank lines are skipped; any other line not of this form is an error
// naming the line and what was expected.
func ParseBuddyInfo(r io.Reader) ([]Zone, error) {
	var zones []Zone
	sc := newScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		z, err := parseBuddyLine(line)
		if err != nil {
			return nil, fmt.Errorf("buddyinfo line %d %s: %w", n, excerpt(line), err)
		}
		zones = append(zones, z)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("buddyinfo: %w", err)
	}
	return zones, nil
}

const buddyForm = `expected "Node <n>, zone <name> <free blocks of order 0> <order 1> ..."`

func parseBuddyLine(line string) (Zone, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "Node" || f[2] != "zone" {
		return Zone{}, errors.New(buddyForm)
	}
	nodeText, ok := strings.CutSuffix(f[1], ",")
	if !ok {
		return Zone{}, fmt.Errorf(`node number %s: expected a comma after it; %s`, excerpt(f[1]), buddyForm)
	}
	node, err := strconv.Atoi(nodeText)
	if err != nil || node < 0 {
		return Zone{}, fmt.Errorf("node number %s: expected a non-negative integer", excerpt(nodeText))
	}
	z := Zone{Node: node, Zone: f[3], Free: make([]uint64, len(f)-4)}
	for order, s := range f[4:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Zone{}, fmt.Errorf("zone %.80s: free blocks of order %d: %s: expected an unsigned integer", z.Zone, order, excerpt(s))
		}
		z.Free[order] = v
	}
	return z, nil
}

// FreeBytes sums the free memory of the zones, in bytes, for pages of
// pageSize bytes. It saturates at math.MaxUint64 rather than wrap.
func FreeBytes(zones []Zone, pageSize uint64) uint64 {
	return FreeBytesAtOrAbove(zones, 0, pageSize)
}

// FreeBytesAtOrAbove sums only the free blocks of order >= order: the memory
// an allocation of that order could be served from without compaction. A
// large FreeBytes with FreeBytesAtOrAbove near zero is fragmentation, not a
// shortage. A negative order counts every block.
func FreeBytesAtOrAbove(zones []Zone, order int, pageSize uint64) uint64 {
	order = max(order, 0)
	var sum uint64
	for _, z := range zones {
		for o := order; o < len(z.Free); o++ {
			sum = addSat(sum, blockBytes(z.Free[o], o, pageSize))
		}
	}
	return sum
}

// blockBytes is count blocks of 2^order pages, in bytes, saturating.
func blockBytes(count uint64, order int, pageSize uint64) uint64 {
	if count == 0 || pageSize == 0 {
		return 0
	}
	hi, lo := bits.Mul64(count, pageSize)
	if hi != 0 || order >= 64 || bits.LeadingZeros64(lo) < order {
		return math.MaxUint64
	}
	return lo << order
}

func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}
