// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"

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
		return fmt.Errorf("%w: run as root, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE (CAP_SYS_ADMIN on kernels before 5.8)", err)
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
