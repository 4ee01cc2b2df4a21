// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"sync"
	"time"
)

// Retention is how long a pod or container stays known after its source
// last listed it. kubelet removes a deleted pod's containers within
// seconds, often before the agent has written the pod's last OOM line,
// and a log pipeline may lag further; ten minutes covers both and keeps
// the table to the node's churn of ten minutes.
const Retention = 10 * time.Minute

// pod is what a source knows of one pod.
type pod struct {
	namespace, name string
	// workload: the pod's controller; workloadKnown says the source can
	// tell it (the API can, with nil for a pod with no controller; the
	// runtime cannot).
	workload      *Workload
	workloadKnown bool
	presence
}

// container is what a source knows of one container, or of a pod's
// sandbox, which kubelet does not name.
type container struct {
	podUID  string
	name    string
	sandbox bool
	presence
}

// presence is when a source stopped listing a thing: zero while it still
// lists it.
type presence struct{ goneAt time.Time }

func (p *presence) gone(now time.Time) {
	if p.goneAt.IsZero() {
		p.goneAt = now
	}
}

// live: listed, or gone less than Retention ago.
func (p *presence) live(now time.Time) bool {
	return p.goneAt.IsZero() || now.Sub(p.goneAt) < Retention
}

// store is one source's view of the node: pods by UID, containers by ID,
// each kept Retention after its source stops listing it.
type store struct {
	mu         sync.Mutex
	pods       map[string]*pod
	containers map[string]*container
	now        func() time.Time
}

func newStore(now func() time.Time) *store {
	return &store{pods: map[string]*pod{}, containers: map[string]*container{}, now: now}
}

// replaceAll makes pods and containers the ones listed now: what is
// missing from them is marked gone and kept for Retention.
func (s *store) replaceAll(pods map[string]*pod, containers map[string]*container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	markGone(s.pods, pods, now)
	markGone(s.containers, containers, now)
	for uid, p := range pods {
		s.pods[uid] = p
	}
	for id, c := range containers {
		s.containers[id] = c
	}
	s.expireLocked(now)
}

// replacePod records one pod and its containers as listed now; its
// containers missing from them are marked gone.
func (s *store) replacePod(uid string, p *pod, containers map[string]*container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pods[uid] = p
	for id, c := range s.containers {
		if _, listed := containers[id]; !listed && c.podUID == uid {
			c.gone(now)
		}
	}
	for id, c := range containers {
		s.containers[id] = c
	}
	s.expireLocked(now)
}

// podGone marks a pod and its containers gone.
func (s *store) podGone(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if p, ok := s.pods[uid]; ok {
		p.gone(now)
	}
	for _, c := range s.containers {
		if c.podUID == uid {
			c.gone(now)
		}
	}
	s.expireLocked(now)
}

// lookup returns copies of the pod and the container (nil where the
// source does not know them, or knew them longer than Retention ago).
// A container known here also names its pod.
func (s *store) lookup(podUID, containerID string) (*pod, *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var p *pod
	var c *container
	if r, ok := s.pods[podUID]; ok && r.live(now) {
		cp := *r
		p = &cp
	}
	if r, ok := s.containers[containerID]; ok && containerID != "" && r.live(now) && r.podUID == podUID {
		cp := *r
		c = &cp
	}
	return p, c
}

func (s *store) expireLocked(now time.Time) {
	for uid, p := range s.pods {
		if !p.live(now) {
			delete(s.pods, uid)
		}
	}
	for id, c := range s.containers {
		if !c.live(now) {
			delete(s.containers, id)
		}
	}
}

// markGone marks what old has and listed lacks as gone at now.
func markGone[T interface{ gone(time.Time) }](old, listed map[string]T, now time.Time) {
	for k, v := range old {
		if _, ok := listed[k]; !ok {
			v.gone(now)
		}
	}
}

// count is how many pods the source lists now.
func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pods {
		if p.goneAt.IsZero() {
			n++
		}
	}
	return n
}
