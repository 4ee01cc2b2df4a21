// SPDX-License-Identifier: Apache-2.0

package procfs

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
)

// TmpfsMounts returns the mount points of tmpfs file systems the given
// processes see, as they see them (an emptyDir with medium: Memory, a
// /dev/shm), without duplicates. Only processes in a mount namespace other
// than the caller's count: the host's own mounts say nothing about a pod.
// Processes that exited are skipped; at most maxProcs are read.
func TmpfsMounts(pids []int, maxProcs int) []string {
	seen := map[string]bool{}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for i, pid := range pids {
		if i >= maxProcs {
			break
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err != nil || ns == self {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// id parent major:minor root mountpoint opts ... - fstype source superopts
			pre, post, ok := strings.Cut(sc.Text(), " - ")
			fields, after := strings.Fields(pre), strings.Fields(post)
			if !ok || len(fields) < 5 || len(after) < 1 || after[0] != "tmpfs" {
				continue
			}
			mp := fields[4]
			// The runtime's own tmpfs mounts are not the workload's.
			if mp == "/dev" || strings.HasPrefix(mp, "/sys") || strings.HasPrefix(mp, "/proc") || strings.HasPrefix(mp, "/run/secrets") || strings.HasSuffix(mp, "serviceaccount") {
				continue
			}
			seen[mp] = true
		}
		f.Close()
	}
	out := make([]string, 0, len(seen))
	for mp := range seen {
		out = append(out, mp)
	}
	sort.Strings(out)
	return out
}
