// SPDX-License-Identifier: Apache-2.0

package kerneltest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/vmtest"
)

// fragmentScript recreates seed 003: plenty of free memory, none of it in
// blocks of order 6. A process fragments what the 384 MiB VM has free and locks
// what it keeps where compaction cannot move it; the test module then asks
// for order-6 blocks and holds those it got while the agent looks.
const fragmentScript = `
echo -1000 > /proc/self/oom_score_adj
echo 0 > /proc/sys/vm/compact_unevictable_allowed
oomtrace agent --metrics-addr= --ready-file /tmp/ready --node-name vm > /tmp/events.jsonl 2> /tmp/agent.log &
AGENT=$!
i=0; while [ ! -f /tmp/ready ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -f /tmp/ready ] || { section agentlog < /tmp/agent.log; exit 10; }
memhog fragment -adj 0 > /tmp/frag 2>&1 & FRAG=$!
i=0; while ! grep -q ready /tmp/frag && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
section buddyinfo < /proc/buddyinfo
section frag < /tmp/frag
insmod /allocfail.ko order=6 tries=1000 hold_ms=2000 2>/dev/null
sleep 0.5
kill $FRAG
kill -TERM $AGENT; wait $AGENT
section events < /tmp/events.jsonl
section agentlog < /tmp/agent.log
`

func TestFragmentation(t *testing.T) {
	kernels, g := matrixSetup(t)
	for _, k := range kernels {
		t.Run(arch(k)+"/"+k.Series, func(t *testing.T) {
			t.Parallel()
			if g.modules[k.Name()] == "" {
				t.Skip(g.moduleSkip(k))
			}
			timeout := vmTimeout(k, 5*time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
			defer cancel()
			res, err := bootOnce(t, ctx, vmtest.BootOptions{
				Kernel:          k,
				MemoryMiB:       384,
				Timeout:         timeout,
				Files:           g.files(k),
				Script:          fragmentScript,
				ConsoleLogLevel: 1,
			})
			if err != nil || res.ExitStatus != 0 {
				t.Fatalf("boot %s: %v, exit %d; agent log:\n%s\nconsole (end):\n%s", k.Release, err, res.ExitStatus, res.Section("agentlog"), lastLines(res.Console, 30))
			}
			schema := eventtest.Schema(t)
			var frag *event.Event
			n := 0
			var seen []string // the first failures' free memory, for a failure message
			for _, line := range strings.Split(strings.TrimSpace(res.Section("events")), "\n") {
				if line == "" {
					continue
				}
				e := eventtest.Validate(t, schema, []byte(line))
				if e.Event != event.KindAllocFailure || e.Alloc.Order != 6 {
					continue
				}
				n++
				if len(seen) < 3 && e.Alloc.FreeBytes != nil && e.Alloc.FreeBytesAtOrAboveOrder != nil {
					seen = append(seen, fmt.Sprintf("free %d, at or above order 6: %d, zones %+v", *e.Alloc.FreeBytes, *e.Alloc.FreeBytesAtOrAboveOrder, e.Buddy))
				}
				for _, f := range e.Diagnosis {
					if f.Code == diagnose.Fragmentation && frag == nil {
						frag = e
					}
				}
			}
			if n == 0 {
				t.Fatalf("no order-6 alloc_failure; fragmenter said %q; buddyinfo before:\n%s\nagent log:\n%s", res.Section("frag"), res.Section("buddyinfo"), res.Section("agentlog"))
			}
			if frag == nil {
				t.Fatalf("%d order-6 failures, none diagnosed as fragmentation; buddyinfo before:\n%s\nthe first failures saw: %s", n, res.Section("buddyinfo"), strings.Join(seen, "; "))
			}
			a := frag.Alloc
			if *a.FreeBytes < 64<<20 || *a.FreeBytesAtOrAboveOrder >= 256<<10 || len(frag.Buddy) == 0 {
				t.Errorf("free %d, at or above order 6: %d, buddy %+v: want tens of MiB free and no 256 KiB block", *a.FreeBytes, *a.FreeBytesAtOrAboveOrder, frag.Buddy)
			}
			for _, f := range frag.Diagnosis {
				if f.Code == diagnose.MemcgKmemCharge {
					t.Errorf("memcg_kmem_charge on an unaccounted allocation: %s", f.Summary)
				}
			}
			t.Logf("%s: %d order-6 failures; %s", k.Release, n, eventtest.Summary(frag, diagnose.Fragmentation))
		})
	}
}
