// SPDX-License-Identifier: Apache-2.0

// Package event defines the records oomtrace reports, one JSON object per
// event (docs/events.md), and decodes them from the BPF ring buffer.
//
// The JSON names are a contract: later versions add fields, never rename.
package event

import (
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// Event kinds, the "event" field.
const (
	KindOOMKill = "oom_kill"
	// KindOOMVictimExiting: the OOM killer picked a task that was already
	// exiting and let it finish instead of sending SIGKILL. No kill
	// happened; /proc/vmstat oom_kill does not count it.
	KindOOMVictimExiting = "oom_victim_exiting"
)

// Constraint values: which memory domain ran out.
const (
	ConstraintMemcg  = "memcg"
	ConstraintGlobal = "global"
)

// Event is one line of output.
type Event struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	Node  string    `json:"node"`

	Victim     *Victim             `json:"victim,omitempty"`
	Trigger    *Trigger            `json:"trigger,omitempty"`
	Constraint string              `json:"constraint,omitempty"`
	Memcg      *Memcg              `json:"memcg,omitempty"`
	K8s        *cgroup.PodIdentity `json:"k8s,omitempty"`
}

// Victim is the task the OOM killer chose.
type Victim struct {
	PID         uint32 `json:"pid"`
	TID         uint32 `json:"tid"`
	NSPID       uint32 `json:"ns_pid"`
	Comm        string `json:"comm"`
	UID         uint32 `json:"uid"`
	OOMScoreAdj int32  `json:"oom_score_adj"`
	// Cgroup is the victim's memory cgroup, relative to the memory
	// hierarchy's root, starting with "/".
	Cgroup        string `json:"cgroup"`
	RSS           RSS    `json:"rss"`
	SwapBytes     uint64 `json:"swap_bytes"`
	TotalVMBytes  uint64 `json:"total_vm_bytes"`
	PgtablesBytes uint64 `json:"pgtables_bytes"`
}

// RSS is the victim's resident memory by kind, as the kernel counts it for
// its "Killed process" line.
type RSS struct {
	AnonBytes  uint64 `json:"anon_bytes"`
	FileBytes  uint64 `json:"file_bytes"`
	ShmemBytes uint64 `json:"shmem_bytes"`
}

// Trigger is the task whose allocation ran into the limit.
type Trigger struct {
	PID    uint32 `json:"pid"`
	TID    uint32 `json:"tid"`
	NSPID  uint32 `json:"ns_pid"`
	Comm   string `json:"comm"`
	Cgroup string `json:"cgroup"`
}

// Memcg is the memory cgroup whose limit fired.
type Memcg struct {
	Path       string `json:"path"`
	LimitBytes uint64 `json:"limit_bytes"`
	UsageBytes uint64 `json:"usage_bytes"`
	// Failcnt: how often usage hit the limit since the cgroup was made.
	Failcnt uint64 `json:"failcnt"`
}
