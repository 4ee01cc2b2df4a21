// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/internal/diagnose"
	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// Pod names that are not what Kubernetes allows (from a runtime's labels,
// say) become label values with escapes: the exposition stays one sample
// a line, parses, holds nothing raw for a terminal, and the agent goes on
// (client_golang panics on a label value that is not UTF-8).
func TestHostileLabelValues(t *testing.T) {
	m := newMetrics(t, Options{})
	for _, s := range safetexttest.Names {
		m.Observe(oomKill(s, s, s, diagnose.ContainerLimit, diagnose.NonInitVictim))
	}
	text := scrapeText(t, m)
	if u := safetexttest.Unsafe(text, true); u != "" {
		t.Fatalf("exposition: %s:\n%s", u, text)
	}
	got := scrape(t, m)
	for _, s := range safetexttest.Names {
		l := safetext.Escape(s)
		key := metricstest.Key("oomtrace_oom_kills_total", map[string]string{
			"namespace": l, "pod": l, "container": l, "constraint": "memcg", "diagnosis": "container_limit",
		})
		if got[key] != 1 {
			t.Errorf("name %q: %s = %v, want 1", s, key, got[key])
		}
	}
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "oomtrace_oom_kills_non_init_total{") {
			n++
		}
	}
	if n != len(safetexttest.Names) {
		t.Errorf("%d non-init series, want one per name, %d", n, len(safetexttest.Names))
	}
}
