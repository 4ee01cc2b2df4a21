// SPDX-License-Identifier: Apache-2.0

// Package kube names the pod and container behind a cgroup: from a pod UID
// and a container ID to namespace, pod, container and the owning workload.
// Two sources feed it, each into its own table kept ahead of the events:
// the node's container runtime over CRI (kubelet's labels; no cluster
// credentials) and the Kubernetes API (a watch on this node's pods, which
// also gives the workload). A lookup never waits longer than
// LookupTimeout and never fails an event: it returns what is known and
// an error saying what is not, and why.
package kube

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// LookupTimeout bounds how long a lookup that misses waits for a fresh
// list: long enough for a runtime to list a busy node's containers
// (milliseconds when it is well), short enough that a slow or stopped one
// delays an event by no more than this.
const LookupTimeout = 400 * time.Millisecond

// DefaultPollInterval is how often the runtime is listed. containerd 1.6
// has no CRI event stream, so the table is kept current by listing; a
// container that OOMs between two lists is found by a list on the miss.
const DefaultPollInterval = 3 * time.Second

// Names is what a lookup found. Empty strings are what it did not.
type Names struct {
	Namespace, Pod, Container string
	Workload                  *Workload
}

// Workload is a pod's controller: a Deployment rather than its
// ReplicaSet where that can be told.
type Workload struct {
	Kind, Name string
}

// source is one place names come from.
type source interface {
	// name is how errors and logs call it: "cri" or "api".
	name() string
	// lookup reads the source's table.
	lookup(podUID, containerID string) (*pod, *container)
	// namesWorkloads: the source tells a pod's workload.
	namesWorkloads() bool
	// fresh returns a channel closed once the table holds what the source
	// had at time at (a list started after it, or the first sync), and the
	// error of that list, valid once the channel is closed.
	fresh(at time.Time) (<-chan struct{}, func() error)
	// notFound says that a table that is fresh lacks the pod, or its
	// container.
	notFound(podUID, containerID string) string
	close()
}

// Resolver looks names up in its sources, in order.
type Resolver struct {
	sources []source
	timeout time.Duration
	// restConfig is the API source's client config; nil without one.
	restConfig *rest.Config

	// stalled is, per source, the list a lookup waited for in vain:
	// later lookups do not wait for it again, so a runtime that hangs
	// costs one event the timeout, not each.
	mu      sync.Mutex
	stalled map[source]<-chan struct{}
}

// Names names the pod podUID and its container containerID ("" for a
// pod-level cgroup) as they were at time at. A miss waits, at most the
// lookup timeout, for the sources to list what they had at that time.
// The error says what is still missing and why; the names returned are
// good either way.
func (r *Resolver) Names(at time.Time, podUID, containerID string) (Names, error) {
	n, missing := r.lookup(podUID, containerID)
	if missing.none() {
		return n, nil
	}
	r.waitFresh(at, missing)
	n, missing = r.lookup(podUID, containerID)
	if missing.none() {
		return n, nil
	}
	return n, r.explain(at, missing, podUID, containerID)
}

// missing is, per thing a lookup wants, the sources that could have told
// it and did not.
type missing struct {
	names     []source // pod names (and the container's, with them)
	container []source
	workload  []source
}

func (m missing) none() bool { return len(m.names)+len(m.container)+len(m.workload) == 0 }

func (m missing) sources() []source {
	var all []source
	for _, s := range [][]source{m.names, m.container, m.workload} {
		for _, src := range s {
			if !slices.Contains(all, src) {
				all = append(all, src)
			}
		}
	}
	return all
}

// lookup merges what the sources know: the first that names a thing
// names it.
func (r *Resolver) lookup(podUID, containerID string) (Names, missing) {
	var n Names
	var podKnown, ctrKnown, workloadKnown bool
	for _, s := range r.sources {
		p, c := s.lookup(podUID, containerID)
		if p != nil && !podKnown {
			n.Namespace, n.Pod, podKnown = p.namespace, p.name, true
		}
		if c != nil && !ctrKnown {
			n.Container, ctrKnown = c.name, true
		}
		if p != nil && p.workloadKnown && !workloadKnown {
			n.Workload, workloadKnown = p.workload, true
		}
	}
	// An unknown pod's container and workload are missing for the same
	// reasons as its names: said once.
	var m missing
	for _, s := range r.sources {
		switch {
		case !podKnown:
			m.names = append(m.names, s)
			continue
		case containerID != "" && !ctrKnown:
			m.container = append(m.container, s)
		}
		if !workloadKnown && s.namesWorkloads() {
			m.workload = append(m.workload, s)
		}
	}
	return n, m
}

// waitFresh waits, at most the lookup timeout, for the sources that
// missed to list what they had at time at.
func (r *Resolver) waitFresh(at time.Time, m missing) {
	timer := time.NewTimer(r.timeout)
	defer timer.Stop()
	for _, s := range m.sources() {
		done, _ := s.fresh(at)
		r.mu.Lock()
		stalled := r.stalled[s] == done
		r.mu.Unlock()
		if stalled {
			continue
		}
		select {
		case <-done:
		case <-timer.C:
			r.mu.Lock()
			if r.stalled == nil {
				r.stalled = map[source]<-chan struct{}{}
			}
			r.stalled[s] = done
			r.mu.Unlock()
			return
		}
	}
}

// explain says what a lookup could not name, and each source's reason.
func (r *Resolver) explain(at time.Time, m missing, podUID, containerID string) error {
	var parts []string
	add := func(what string, srcs []source) {
		if len(srcs) == 0 {
			return
		}
		var why []string
		for _, s := range srcs {
			why = append(why, s.name()+": "+r.reason(s, at, podUID, containerID))
		}
		parts = append(parts, what+": "+strings.Join(why, "; "))
	}
	if containerID != "" {
		add("pod and container names", m.names)
	} else {
		add("pod names", m.names)
	}
	add("container name", m.container)
	add("workload", m.workload)
	return errors.New(strings.Join(parts, "; "))
}

// reason is why source s has not named the pod or container: the list
// waited for failed or did not finish in time, or it lacks them.
func (r *Resolver) reason(s source, at time.Time, podUID, containerID string) string {
	done, errOf := s.fresh(at)
	select {
	case <-done:
	default:
		if err := errOf(); err != nil {
			return err.Error() // a watch that keeps failing, e.g. forbidden
		}
		return fmt.Sprintf("no answer within %s", r.timeout)
	}
	if err := errOf(); err != nil {
		return err.Error()
	}
	return s.notFound(podUID, containerID)
}

// RESTConfig is the Kubernetes API client config the API source uses
// (in-cluster or --kubeconfig), for other writers to the same API; nil
// when names do not come from the API.
func (r *Resolver) RESTConfig() *rest.Config {
	if r == nil || r.restConfig == nil {
		return nil
	}
	return rest.CopyConfig(r.restConfig)
}

// Close stops the sources' goroutines and waits for them.
func (r *Resolver) Close() {
	var wg sync.WaitGroup
	for _, s := range r.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.close()
		}()
	}
	wg.Wait()
}

// short is a container ID as people read it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
