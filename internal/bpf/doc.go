// SPDX-License-Identifier: Apache-2.0

// Package bpf holds the BPF object compiled from ../../bpf by bpf2go and
// the Go types generated from the C records (bpf2go -type), so the layouts
// cannot drift. The generated files are committed: building oomtrace needs
// no clang. `make generate` rebuilds them; CI fails if they differ.
package bpf

//go:generate go tool bpf2go -cc ${BPF_CLANG} -cflags ${BPF_CFLAGS} -target amd64,arm64 -type oom_kill_event -type memcg_oom_event -type alloc_failure_event -type oom_context -type kernel_stack -type task_info -type cgroup_path -type memcg_level -type event_header -type event_kind -type alloc_source -type counter -type alloc_key -type alloc_tally Oomtrace ../../bpf/oomtrace.bpf.c -- -I../../headers -I../../bpf
