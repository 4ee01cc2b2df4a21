// SPDX-License-Identifier: Apache-2.0

// Package vmtest boots Debian kernels under qemu (software emulation, no KVM)
// with a small initramfs, runs a shell scenario inside and hands back what the
// guest printed. It lets tests run oomtrace against kernels other than the
// host's (5.10, 6.1, 6.12), with real OOMs, in a few seconds per boot.
//
// Kernels come from scripts/vm/fetch-kernels.sh, which caches them under
// $OOMTRACE_VM_CACHE (default /var/cache/oomtrace-vm). A test looks like:
//
//	k, err := vmtest.FindKernel("6.1")
//	if errors.Is(err, vmtest.ErrNoKernel) {
//		t.Skip(err)
//	}
//	res, err := vmtest.Boot(ctx, vmtest.BootOptions{
//		Kernel: k,
//		Files:  []vmtest.File{{Guest: "/bin/oomtrace", Host: bin}},
//		Script: `oomtrace agent > /tmp/events.jsonl & ...; section events < /tmp/events.jsonl`,
//	})
//	events := res.Section("events") // JSONL, free of kernel messages
//
// The guest has a static busybox with its applets, proc, sysfs, devtmpfs,
// cgroup2 (/sys/fs/cgroup), tracefs, debugfs and bpffs mounted, and whatever
// BootOptions.Files adds; programs must be static (CGO_ENABLED=0, see
// BuildStatic). The console (ttyS0) carries kernel messages and the
// scenario's output; a second serial port carries only the exit status and
// the sections (see OutputPort).
package vmtest
