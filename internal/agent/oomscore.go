// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// DefaultOOMScoreAdj is what the agent lowers its own oom_score_adj to.
// Left at the inherited value, the agent is among the first processes a
// global OOM kills on a small node (seen in a 1 GiB VM: after two victims
// the kernel killed the agent), and then nothing reports the OOMs that
// follow. -999 ranks it below every pod, node-critical and Guaranteed pods
// included (the kubelet gives those -997), beside the kubelet itself; not
// -1000, which exempts a process entirely, so an agent that leaks can
// still be killed.
const DefaultOOMScoreAdj = -999

// MinOOMScoreAdj is the lowest oom_score_adj: the process is never killed.
const MinOOMScoreAdj = -1000

// ownOOMScoreAdj is the agent's own OOM score adjustment; tests point it
// elsewhere.
var ownOOMScoreAdj = "/proc/self/oom_score_adj"

// lowerOOMScoreAdj lowers the value in path to target, never raising it:
// a lower value set on purpose (e.g. -1000 by an operator) stays. It
// returns the value before and after.
func lowerOOMScoreAdj(path string, target int) (before, after int, err error) {
	if before, err = readOOMScoreAdj(path); err != nil {
		return 0, 0, err
	}
	if before <= target {
		return before, before, nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(target)), 0); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said below
		}
		return before, before, fmt.Errorf("write %d to %s (now %d): %w", target, path, before, err)
	}
	if after, err = readOOMScoreAdj(path); err != nil {
		return before, 0, err
	}
	return before, after, nil
}

func readOOMScoreAdj(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", path, b)
	}
	return n, nil
}

// protectFromOOMKiller lowers the agent's own oom_score_adj to target (0:
// leave it as inherited). It is best effort: lowering needs
// CAP_SYS_RESOURCE, and some kernels and sandboxes refuse negative values
// even to root; the agent then runs on and says what it risks.
func protectFromOOMKiller(path string, target int, log *zap.Logger) {
	if target == 0 {
		log.Info("oom_score_adj left as inherited (--oom-score-adj=0)")
		return
	}
	before, after, err := lowerOOMScoreAdj(path, target)
	switch {
	case err != nil:
		log.Warn("oom_score_adj not lowered: a global OOM may kill the agent before the processes it watches (lowering it needs CAP_SYS_RESOURCE)",
			zap.Int("wanted", target), zap.Error(err))
	case before <= target:
		log.Info("oom_score_adj already at or below the value asked for; kept", zap.Int("current", before), zap.Int("asked", target))
	case after != target:
		log.Warn("oom_score_adj not lowered as asked: the kernel kept another value",
			zap.Int("wanted", target), zap.Int("current", after))
	default:
		log.Info("oom_score_adj lowered, so a global OOM kills the agent last", zap.Int("from", before), zap.Int("to", after))
	}
}
