// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Busybox is the host's static busybox, copied into the initramfs of a
// guest of the host's architecture as /bin/busybox (Debian's busybox-static
// installs it there); see Arch.Busybox.
var Busybox = "/bin/busybox"

// Markers the guest writes on its output port. They are unique enough not to
// appear in program output by accident.
const (
	markerExit  = "OOMTRACE-VM-EXIT="
	markerInit  = "OOMTRACE-VM-INIT uptime="
	markerBegin = "OOMTRACE-VM-BEGIN "
	markerEnd   = "OOMTRACE-VM-END "
)

// DefaultCPU is the emulated CPU model of an amd64 guest.
//
// -cx16: with cmpxchg16b, Debian's 6.12 kernel crashed in 5 of 12 boots under
// qemu 7.2's TCG (double faults and garbage EFLAGS right after the
// `cmpxchg16b %gs:` of SLUB's per-CPU fast path, with one or several TCG
// threads); with this model none of 60 boots failed (40 of them 6.12), and the
// kernels fall back to their cmpxchg16b emulation.
// +rdrand: the kernel seeds its RNG at once (CONFIG_RANDOM_TRUST_CPU), so a
// guest program's getrandom() does not block for seconds on 5.10.
const DefaultCPU = "qemu64,-cx16,+rdrand"

// File is an extra file for the initramfs: either a host file or bytes.
type File struct {
	Guest string      // path in the guest, e.g. "/bin/oomtrace"
	Host  string      // host file to copy; if empty, Data is used
	Data  []byte      // content when Host is empty
	Mode  fs.FileMode // permission bits; 0 takes the host file's (or 0644 for Data)
}

// BootOptions says what to boot and what to run.
type BootOptions struct {
	Kernel    Kernel
	MemoryMiB int // guest RAM, default 512
	CPUs      int // default 2
	// NUMANodes, when 2 or more, splits the guest's RAM evenly into that
	// many NUMA nodes (node i has CPUs i, i+n, ...; a node without a CPU is
	// memory only), for OOMs constrained to a node (cpuset.mems,
	// set_mempolicy). Otherwise the guest has one node.
	NUMANodes int
	CPU       string        // qemu -cpu, default the architecture's (Arch.CPU)
	Timeout   time.Duration // whole run, boot to power-off; default 60s
	Files     []File        // added to the initramfs; executables must be static
	// Script is the scenario, run by busybox sh as /scenario.sh after the
	// mounts. Its exit status is Result.ExitStatus. The shell function
	// `section NAME` copies its stdin to the output port between markers,
	// for Result.Section; $VM_OUT names the port (Arch.OutputPort).
	Script string
	// Cmdline is added to the kernel command line.
	Cmdline []string
	// ConsoleLogLevel, when > 0, is set with `dmesg -n` before the scenario
	// starts (1 = only emergencies reach the console). Otherwise the console
	// shows what `quiet` lets through: errors and worse, such as the OOM
	// killer's "Killed process" line (add "loglevel=7" to Cmdline for all).
	// `dmesg` in the scenario reads the whole log either way.
	ConsoleLogLevel int
	// Console, when set, also gets the console output as it arrives (for
	// example a writer that logs to the test).
	Console io.Writer
	// QEMUArgs are added to qemu's command line (e.g. -icount, for guest
	// time that counts instructions, not the host's seconds).
	QEMUArgs []string
}

// Result is what a run printed.
type Result struct {
	Console    string        // Arch.Console: kernel messages and the scenario's stdout and stderr
	Output     string        // Arch.OutputPort: markers and sections, "\r" removed
	ExitStatus int           // the scenario's exit status, -1 if /init never reported it
	Duration   time.Duration // qemu start to exit
	// InitAt is the guest's uptime when /init started: how long the kernel
	// took to boot. Zero if not reported.
	InitAt time.Duration
}

// Section returns the lines written with `section NAME` (several sections
// of the same name are joined), each ending in "\n". It is empty if there
// is no such section.
func (r Result) Section(name string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(r.Output, "\n") {
		switch {
		case !in && line == markerBegin+name:
			in = true
		case in && strings.HasSuffix(line, markerEnd+name):
			// A last line without "\n" has the end marker glued to it.
			if rest := strings.TrimSuffix(line, markerEnd+name); rest != "" {
				b.WriteString(rest + "\n")
			}
			in = false
		case in:
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// Boot builds an initramfs, boots opts.Kernel in qemu, runs opts.Script and
// returns what the guest printed once it powers off. A scenario that exits
// non-zero is not an error (see Result.ExitStatus); a timeout, a kernel panic
// or an /init that never reports are, and the partial Result is returned with
// the error so the console can be shown.
func Boot(ctx context.Context, opts BootOptions) (Result, error) {
	res := Result{ExitStatus: -1}
	if opts.Kernel.Vmlinuz == "" {
		return res, errors.New("boot: no kernel given")
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 512
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	arch, err := opts.Kernel.arch()
	if err != nil {
		return res, fmt.Errorf("boot %s: %w", opts.Kernel.Release, err)
	}
	if opts.CPU == "" {
		opts.CPU = arch.CPU
	}
	qemu, err := exec.LookPath(arch.QEMU)
	if err != nil {
		return res, fmt.Errorf("boot %s: %w (apt-get install %s)", opts.Kernel.Release, err, arch.Package)
	}

	dir, err := os.MkdirTemp("", "oomtrace-vm-")
	if err != nil {
		return res, fmt.Errorf("boot %s: %w", opts.Kernel.Release, err)
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(initrd, arch, opts); err != nil {
		return res, fmt.Errorf("boot %s: %w", opts.Kernel.Release, err)
	}
	outPath := filepath.Join(dir, "output-port")

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmdline := append([]string{"console=" + arch.Console, "panic=-1", "quiet"}, opts.Cmdline...)
	args := append([]string{
		"-nodefaults", // no NIC, VGA, floppy or CD-ROM to probe: faster boot
		"-nographic",
		"-no-reboot", // a panic (panic=-1 reboots at once) ends qemu instead of looping
	}, arch.Machine...)
	args = append(args,
		"-cpu", opts.CPU,
		"-m", strconv.Itoa(opts.MemoryMiB),
		"-smp", strconv.Itoa(opts.CPUs),
		"-kernel", opts.Kernel.Vmlinuz,
		"-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
		"-serial", "stdio", // the console
	)
	args = append(args, arch.outputArgs(outPath)...)
	args = append(args, numaArgs(opts.MemoryMiB, opts.CPUs, opts.NUMANodes)...)
	args = append(args, opts.QEMUArgs...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	var console bytes.Buffer
	if opts.Console != nil {
		cmd.Stdout = io.MultiWriter(&console, opts.Console)
	} else {
		cmd.Stdout = &console
	}
	cmd.Stderr = cmd.Stdout
	// Do not leave an emulator running if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	runErr := cmd.Run()
	res.Duration = time.Since(start)
	res.Console = console.String()
	if b, err := os.ReadFile(outPath); err == nil {
		res.Output = strings.ReplaceAll(string(b), "\r", "")
	}
	res.parseMarkers()

	tag := fmt.Sprintf("boot %s", opts.Kernel.Release)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && res.ExitStatus < 0:
		return res, fmt.Errorf("%s: timed out after %v; console ends with:\n%s", tag, opts.Timeout, tail(res.Console, 40))
	case ctx.Err() != nil && res.ExitStatus < 0:
		return res, fmt.Errorf("%s: %w", tag, ctx.Err())
	case runErr != nil && res.ExitStatus < 0:
		return res, fmt.Errorf("%s: qemu: %w; console ends with:\n%s", tag, runErr, tail(res.Console, 40))
	case res.ExitStatus < 0:
		return res, fmt.Errorf("%s: the guest stopped without reporting an exit status (kernel panic or /init died?); console ends with:\n%s", tag, tail(res.Console, 40))
	}
	return res, nil
}

// numaArgs are qemu's arguments for a guest of memMiB and cpus split into
// nodes NUMA nodes: one RAM backend per node, the remainder of an uneven
// split on the last.
func numaArgs(memMiB, cpus, nodes int) []string {
	if nodes < 2 {
		return nil
	}
	var args []string
	for n := 0; n < nodes; n++ {
		size := memMiB / nodes
		if n == nodes-1 {
			size = memMiB - size*(nodes-1)
		}
		node := fmt.Sprintf("node,nodeid=%d,memdev=m%d", n, n)
		for c := n; c < cpus; c += nodes {
			node += fmt.Sprintf(",cpus=%d", c)
		}
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-ram,id=m%d,size=%dM", n, size),
			"-numa", node)
	}
	return args
}

// parseMarkers reads the exit status and /init's start time, from the output
// port, or from the console if the port has none.
func (r *Result) parseMarkers() {
	for _, text := range []string{r.Output, r.Console} {
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if i := strings.Index(line, markerExit); i >= 0 && r.ExitStatus < 0 {
				if n, err := strconv.Atoi(strings.TrimSpace(line[i+len(markerExit):])); err == nil {
					r.ExitStatus = n
				}
			}
			if i := strings.Index(line, markerInit); i >= 0 && r.InitAt == 0 {
				if f, err := strconv.ParseFloat(strings.TrimSpace(line[i+len(markerInit):]), 64); err == nil {
					r.InitAt = time.Duration(f * float64(time.Second))
				}
			}
		}
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// initScript is /init. Mount failures are reported, not fatal: the scenario
// decides whether it needs the file system.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root VM_OUT=@OUTPUT_PORT@
m() { mkdir -p "$3"; mount -t "$1" "$2" "$3" || echo "init: mount $1 on $3 failed" >&2; }
m proc proc /proc
m sysfs sysfs /sys
m devtmpfs devtmpfs /dev
m cgroup2 cgroup2 /sys/fs/cgroup
m tracefs tracefs /sys/kernel/tracing
m debugfs debugfs /sys/kernel/debug
m bpf bpf /sys/fs/bpf
# raw: no "\n" to "\r\n" translation and no echo on the output port.
stty -F $VM_OUT raw -echo
read up idle < /proc/uptime
echo "` + markerInit + `$up" > $VM_OUT
@LOGLEVEL@
sh /scenario.sh < /dev/null
rc=$?
echo "` + markerExit + `$rc" > $VM_OUT
echo "` + markerExit + `$rc"
# stty sets the line with TCSADRAIN, so it returns once the UART has sent
# everything queued: poweroff -f would otherwise cut the tail off.
stty -F $VM_OUT raw
sync
poweroff -f
`

// scenarioPrelude is put before BootOptions.Script in /scenario.sh.
const scenarioPrelude = `# section NAME: copy stdin to the output port between markers.
section() {
	{ echo "` + markerBegin + `$1"; cat; echo "` + markerEnd + `$1"; } > $VM_OUT
}
`

func writeInitramfs(file string, arch Arch, opts BootOptions) error {
	busybox := arch.Busybox()
	if err := checkStatic(busybox, arch); err != nil {
		return fmt.Errorf("%w (the guest's busybox: scripts/vm/fetch-kernels.sh --arch %s fetches it)", err, arch.Name)
	}
	loglevel := ""
	if opts.ConsoleLogLevel > 0 {
		loglevel = fmt.Sprintf("dmesg -n %d", opts.ConsoleLogLevel)
	}
	entries := []Entry{
		Dir("/dev", 0o755),
		CharDev("/dev/console", 0o600, 5, 1),
		Dir("/proc", 0o755),
		Dir("/sys", 0o755),
		Dir("/tmp", 0o1777),
		Dir("/root", 0o700),
		Dir("/sbin", 0o755),
		Dir("/usr/bin", 0o755),
		Dir("/usr/sbin", 0o755),
		HostFile("/bin/busybox", busybox, 0o755),
		Regular("/init", []byte(strings.NewReplacer("@LOGLEVEL@", loglevel, "@OUTPUT_PORT@", arch.OutputPort).Replace(initScript)), 0o755),
		Regular("/scenario.sh", []byte(scenarioPrelude+opts.Script), 0o755),
	}
	for _, f := range opts.Files {
		if f.Host != "" {
			if err := checkStatic(f.Host, arch); err != nil {
				return err
			}
			entries = append(entries, HostFile(f.Guest, f.Host, f.Mode))
			continue
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		entries = append(entries, Regular(f.Guest, f.Data, mode))
	}
	out, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := WriteCPIO(bw, entries); err != nil {
		out.Close()
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return fmt.Errorf("initramfs: %w", err)
	}
	return out.Close()
}

// checkStatic fails for an ELF file that is dynamically linked (the
// initramfs has no libc or loader) or built for another machine than the
// guest's. Other files (scripts, data) pass.
func checkStatic(path string, arch Arch) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer fh.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(fh, magic); err != nil || string(magic) != elf.ELFMAG {
		return nil // not ELF
	}
	f, err := elf.NewFile(fh)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", path, err)
	}
	// Relocatable objects (kernel modules) are checked too: a module of
	// another architecture would not load.
	if f.Machine != arch.ELF {
		return fmt.Errorf("initramfs: %s is built for %s, the guest is %s (%s)", path, f.Machine, arch.Name, arch.ELF)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("initramfs: %s is dynamically linked; guest programs must be static (CGO_ENABLED=0)", path)
		}
	}
	return nil
}
