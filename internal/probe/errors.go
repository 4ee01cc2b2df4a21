// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ErrNoBTF means the kernel has no BTF, which CO-RE and tp_btf need.
var ErrNoBTF = errors.New("kernel BTF not found at /sys/kernel/btf/vmlinux: oomtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (distribution kernels from 5.10 on have it)")

func requireKernelBTF() error {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return fmt.Errorf("%w (%v)", ErrNoBTF, err)
	}
	return nil
}

// explainPerm adds what to do to a permission error.
func explainPerm(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %v", err, ErrPrivileges)
	}
	return err
}

// explainLoad keeps the end of the verifier's log, where it says why.
func explainLoad(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\nverifier log (end):\n%+.20v", err, ve)
	}
	return explainPerm(err)
}

// Capabilities the agent needs: loading tracing programs takes CAP_BPF and
// CAP_PERFMON (Linux 5.8+) or CAP_SYS_ADMIN, which covers both.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// ErrPrivileges means the process may not load tracing programs.
var ErrPrivileges = errors.New("missing privileges: run as root, or grant CAP_BPF and CAP_PERFMON (and CAP_SYS_RESOURCE on kernels before 5.11; CAP_SYS_ADMIN before 5.8)")

// checkPrivileges fails early, with what is missing, rather than with the
// first EPERM from a syscall deep in the loader.
func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell; let the loader report
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	var lack []string
	if !has(capBPF) {
		lack = append(lack, "CAP_BPF")
	}
	if !has(capPerfmon) {
		lack = append(lack, "CAP_PERFMON")
	}
	return fmt.Errorf("%w: this process lacks %s", ErrPrivileges, strings.Join(lack, " and "))
}
