// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// A process, container or mount name chosen to forge the message (a
// second line in kubectl describe, a terminal escape, words that read as
// the message's own) shows quoted with escapes, in one line; the Pod and
// Node Events alike.
func TestMessageHostileNames(t *testing.T) {
	for _, s := range safetexttest.Names {
		e := kill(s, 30271, 271, time.Now())
		e.K8s.Container = s
		e.Constraint = event.ConstraintGlobal
		e.Memcg.Stat.ShmemBytes = 100 << 20
		e.TmpfsMounts = []string{"/" + s}
		e.Diagnosis = append(e.Diagnosis, event.Finding{Code: diagnose.ShmemDominant})
		reps, _ := reports(e, testNode)
		if len(reps) != 2 {
			t.Fatalf("name %q: %d reports, want the Pod's and the Node's", s, len(reps))
		}
		for _, r := range reps {
			if u := safetexttest.Unsafe(r.message, false); u != "" {
				t.Errorf("name %q: %s message %q: %s", s, r.ref.Kind, r.message, u)
			}
			q := safetext.Quote(s)
			if !strings.Contains(r.message, "process "+q+" (pid ") || !strings.Contains(r.message, " in container "+q) {
				t.Errorf("name %q: %s message %q does not name it as %s", s, r.ref.Kind, r.message, q)
			}
		}
		if want := " in " + safetext.Quote("/"+s); !strings.HasSuffix(reps[0].message, want) {
			t.Errorf("name %q: message %q does not end with the mount %s", s, reps[0].message, want)
		}
	}
}
