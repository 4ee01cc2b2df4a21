// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
)

// Kinds are the event kinds a filter may name, in the order help lists them.
var Kinds = []string{event.KindOOMKill, event.KindMemcgOOM, event.KindAllocFailure, event.KindOOMVictimExiting, event.KindAllocFailuresFolded}

// Filter selects events; a zero field matches everything. Every field set
// must match (and). It is also the request a client sends (docs/stream.md).
type Filter struct {
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	PodUID    string `json:"pod_uid,omitempty"`
	Container string `json:"container,omitempty"`
	// Cgroup is a memory cgroup path prefix, whole levels only: "/a/b"
	// matches /a/b and /a/b/c, not /a/bc. It matches the victim's, the
	// trigger's or the limiting cgroup.
	Cgroup string `json:"cgroup,omitempty"`
	// PID matches the victim's or the trigger's host pid.
	PID uint32 `json:"pid,omitempty"`
	// Comm matches the victim's or the trigger's command name exactly.
	Comm string `json:"comm,omitempty"`
	// Events lists the kinds wanted (empty: every kind).
	Events []string `json:"events,omitempty"`
	// MinOrder drops alloc_failure events of a lower allocation order.
	MinOrder uint32 `json:"min_order,omitempty"`
}

// Check says what is wrong with f, naming the field.
func (f Filter) Check() error {
	for _, k := range f.Events {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("event kind %q: want %s", k, strings.Join(Kinds, ", "))
		}
	}
	if f.Cgroup != "" && !strings.HasPrefix(f.Cgroup, "/") {
		return fmt.Errorf("cgroup %q: want a path from the memory hierarchy's root, starting with /", f.Cgroup)
	}
	return nil
}

// Match reports whether e passes every filter set.
func (f *Filter) Match(e *event.Event) bool {
	if len(f.Events) > 0 && !slices.Contains(f.Events, e.Event) {
		return false
	}
	if f.MinOrder > 0 && e.Alloc != nil && e.Alloc.Order < f.MinOrder {
		return false
	}
	if f.Namespace != "" || f.Pod != "" || f.PodUID != "" || f.Container != "" {
		k := e.K8s
		if k == nil ||
			(f.Namespace != "" && k.Namespace != f.Namespace) ||
			(f.Pod != "" && k.Pod != f.Pod) ||
			(f.PodUID != "" && k.PodUID != f.PodUID) ||
			(f.Container != "" && k.Container != f.Container) {
			return false
		}
	}
	if f.Cgroup != "" && !slices.ContainsFunc(cgroupsOf(e), func(p string) bool { return underCgroup(p, f.Cgroup) }) {
		return false
	}
	if f.PID != 0 && !((e.Victim != nil && e.Victim.PID == f.PID) || (e.Trigger != nil && e.Trigger.PID == f.PID)) {
		return false
	}
	if f.Comm != "" && !((e.Victim != nil && e.Victim.Comm == f.Comm) || (e.Trigger != nil && e.Trigger.Comm == f.Comm)) {
		return false
	}
	return true
}

// cgroupsOf lists the cgroups an event names.
func cgroupsOf(e *event.Event) []string {
	var c []string
	if e.Victim != nil {
		c = append(c, e.Victim.Cgroup)
	}
	if e.Trigger != nil {
		c = append(c, e.Trigger.Cgroup)
	}
	if e.Memcg != nil {
		c = append(c, e.Memcg.Path)
	}
	if e.Folded != nil && e.Folded.Cgroup != "" {
		c = append(c, e.Folded.Cgroup)
	}
	return c
}

// underCgroup reports whether path is prefix or below it.
func underCgroup(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}

// Request is the one line a client sends: what it wants to see.
type Request struct {
	Filter
	// Since asks for the events of this last while the agent still holds
	// (a Go duration, e.g. "5m"), before the live ones.
	Since string `json:"since,omitempty"`
}

// since parses Since.
func (r Request) since() (time.Duration, error) {
	if r.Since == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Since)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("since %q: want a duration, e.g. 5m", r.Since)
	}
	return d, nil
}
