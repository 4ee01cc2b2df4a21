// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"runtime"
)

// Arch is a guest architecture: the emulator that runs it and the names of
// the guest's devices.
type Arch struct {
	Name    string // Debian's and Go's name: "amd64", "arm64"
	QEMU    string // the emulator binary
	Package string // the Debian package that has it
	// Machine is qemu's machine and accelerator arguments.
	Machine []string
	// CPU is the default qemu -cpu.
	CPU string
	// Console is the kernel's console device (console=).
	Console string
	// OutputPort is the guest device that carries the exit marker and
	// sections; outputArgs are qemu's arguments that give the guest that
	// device, writing to a host file.
	OutputPort string
	outputArgs func(hostFile string) []string
	// ELF is the machine the guest's programs must be built for.
	ELF elf.Machine
}

// AMD64 is an x86-64 guest.
//
// The output port is a second 16550 UART: the console (ttyS0) also carries
// kernel messages, which printk can put in the middle of a line a program is
// writing, so a JSONL stream read from it can be corrupted; the second UART
// (ttyS1, qemu's `-serial file:`) only carries what the guest writes to it.
// Why not virtio-serial: Debian's 5.10 and 6.1 cloud kernels build
// virtio_console as a module, and the initramfs has no modules, while the
// 8250 driver is built in everywhere.
//
// thread=single: one host thread runs both vCPUs in turn. With qemu's
// multi-threaded TCG an x86 guest now and then died at boot with "Oops:
// int3" where a static key was being patched (the kernel's int3-based
// text_poke, which relies on every other CPU seeing the new bytes after its
// sync IPI). The matrix runs two VMs at a time on two host CPUs, so it lost
// no time by it (amd64 matrix and flood tests: 528 s, and 6.1's tests alone
// as fast as with a thread per vCPU).
var AMD64 = Arch{
	Name:       "amd64",
	QEMU:       "qemu-system-x86_64",
	Package:    "qemu-system-x86",
	Machine:    []string{"-accel", "tcg,thread=single"},
	CPU:        DefaultCPU,
	Console:    "ttyS0",
	OutputPort: "/dev/ttyS1",
	outputArgs: func(f string) []string { return []string{"-serial", "file:" + f} },
	ELF:        elf.EM_X86_64,
}

// ARM64 is an arm64 guest on qemu's virt board.
//
// The board has one UART (a PL011, ttyAMA0), the console. The output port
// is a 16550 on the PCI bus (qemu's pci-serial, ttyS0 in the guest): Debian's
// arm64 cloud kernels build the 8250 PCI driver and the generic PCI host in,
// virtio as modules.
//
// -cpu max: the newest architecture the emulator knows, as recent arm64
// servers have; pauth-impdef: pointer authentication with qemu's own cheap
// algorithm instead of the architected QARMA cipher, which qemu's
// documentation calls expensive to emulate (the kernels sign and check
// return addresses in every function).
var ARM64 = Arch{
	Name:       "arm64",
	QEMU:       "qemu-system-aarch64",
	Package:    "qemu-system-arm",
	Machine:    []string{"-M", "virt", "-accel", "tcg"},
	CPU:        "max,pauth-impdef=on",
	Console:    "ttyAMA0",
	OutputPort: "/dev/ttyS0",
	outputArgs: func(f string) []string {
		return []string{"-chardev", "file,id=vmout,path=" + f, "-device", "pci-serial,chardev=vmout"}
	},
	ELF: elf.EM_AARCH64,
}

// Arches lists the guest architectures, the host's first.
var Arches = []Arch{AMD64, ARM64}

// ArchByName returns the architecture of a Debian/Go name.
func ArchByName(name string) (Arch, error) {
	for _, a := range Arches {
		if a.Name == name {
			return a, nil
		}
	}
	return Arch{}, fmt.Errorf("architecture %q: want amd64 or arm64", name)
}

// Busybox is the static busybox of a guest of this architecture: the
// host's own (Debian's busybox-static) when the architectures match, else
// the one scripts/vm/fetch-kernels.sh --arch caches.
func (a Arch) Busybox() string {
	if a.Name == runtime.GOARCH {
		return Busybox
	}
	return filepath.Join(CacheDir(), "busybox", a.Name, "busybox")
}
