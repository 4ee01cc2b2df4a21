// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCPIO writes an archive and unpacks it with busybox cpio, an
// implementation that is not ours.
func TestCPIO(t *testing.T) {
	bb, err := exec.LookPath(Busybox)
	if err != nil {
		t.Skipf("busybox not found at %s (apt-get install busybox-static): %v", Busybox, err)
	}
	host := filepath.Join(t.TempDir(), "host")
	if err := os.WriteFile(host, []byte("from the host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = WriteCPIO(&buf, []Entry{
		Dir("/etc", 0o750),
		Regular("/etc/hello", []byte("hello"), 0o600), // length not a multiple of 4
		HostFile("/deep/er/copy", host, 0),
		Symlink("/bin/sh", "busybox"),
		Dir("etc", 0o755), // already written: skipped
	})
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command(bb, "cpio", "-i", "-d")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"etc/hello", "hello", 0o600},
		{"deep/er/copy", "from the host\n", 0o640},
	} {
		p := filepath.Join(dir, c.path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if string(b) != c.data {
			t.Errorf("%s = %q, want %q", c.path, b, c.data)
		}
		if st, err := os.Stat(p); err == nil && st.Mode().Perm() != c.mode {
			t.Errorf("%s mode %v, want %v", c.path, st.Mode().Perm(), c.mode)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "etc")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("etc: %v %v, want a directory with mode 0750", st.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q (%v), want busybox", target, err)
	}
}

func TestSection(t *testing.T) {
	r := Result{Output: "OOMTRACE-VM-INIT uptime=1.5\n" +
		"OOMTRACE-VM-BEGIN a\n{\"x\":1}\n{\"x\":2}\nOOMTRACE-VM-END a\n" +
		"OOMTRACE-VM-BEGIN b\nno newlineOOMTRACE-VM-END b\n" +
		"OOMTRACE-VM-BEGIN a\n{\"x\":3}\nOOMTRACE-VM-END a\n" +
		"OOMTRACE-VM-EXIT=3\n", ExitStatus: -1}
	r.parseMarkers()
	if got, want := r.Section("a"), "{\"x\":1}\n{\"x\":2}\n{\"x\":3}\n"; got != want {
		t.Errorf("Section(a) = %q, want %q", got, want)
	}
	if got, want := r.Section("b"), "no newline\n"; got != want {
		t.Errorf("Section(b) = %q, want %q", got, want)
	}
	if got := r.Section("c"); got != "" {
		t.Errorf("Section(c) = %q, want empty", got)
	}
	if r.ExitStatus != 3 || r.InitAt != 1500*time.Millisecond {
		t.Errorf("ExitStatus %d, InitAt %v; want 3, 1.5s", r.ExitStatus, r.InitAt)
	}
}

// bootScenario checks the guest from inside, then causes a memcg OOM with
// memhog in a 32M cgroup. Section "hog" takes memhog's output while the
// kernel prints its OOM report on the console, to show they stay apart.
const bootScenario = `
set -o pipefail
section facts <<EOF
release=$(uname -r)
controllers=$(cat /sys/fs/cgroup/cgroup.controllers)
btf=$(test -e /sys/kernel/btf/vmlinux && echo yes || echo no)
tracing=$(test -e /sys/kernel/tracing/trace_pipe && echo yes || echo no)
nodes=$(cat /sys/devices/system/node/online)
node1_cpus=$(cat /sys/devices/system/node/node1/cpulist)
node1_kib=$(awk '/MemTotal/ {print $4}' /sys/devices/system/node/node1/meminfo)
EOF
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/t
echo 32M > /sys/fs/cgroup/t/memory.max
/bin/memhog hog -adj 0 -cgroup /sys/fs/cgroup/t -mib 64 -progress 2>&1 | section hog
hog=$?
{ echo "hog_status $hog"; cat /sys/fs/cgroup/t/memory.events; } | section oom
`

func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped: -short: boots a VM per kernel")
	}
	for _, arch := range Arches {
		t.Run(arch.Name, func(t *testing.T) { testBoot(t, arch) })
	}
}

func testBoot(t *testing.T, arch Arch) {
	if _, err := exec.LookPath(arch.QEMU); err != nil {
		t.Skipf("%s not found (apt-get install %s): %v", arch.QEMU, arch.Package, err)
	}
	ctx := context.Background()
	memhog := filepath.Join(t.TempDir(), "memhog")
	if err := BuildStaticFor(ctx, arch.Name, "../..", "./internal/memhog", memhog); err != nil {
		t.Fatal(err)
	}
	// arm64 gets three times as long: its emulation does more per guest
	// instruction (see kerneltest's vmTimeout).
	timeout := 90 * time.Second
	if arch.Name == ARM64.Name {
		timeout = 3 * timeout
	}
	for _, series := range SeriesOf(arch.Name) {
		t.Run(series, func(t *testing.T) {
			k, err := FindArchKernel(arch.Name, series)
			if errors.Is(err, ErrNoKernel) {
				t.Skipf("no %s kernel: %v", series, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			res, err := Boot(ctx, BootOptions{
				Kernel:  k,
				Timeout: timeout,
				// Two nodes of 256 MiB: what the kernel matrix's
				// cpuset and mempolicy OOMs need.
				NUMANodes: 2,
				Files:     []File{{Guest: "/bin/memhog", Host: memhog}},
				Script:    bootScenario,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s (%s): kernel booted to /init in %.1fs (guest clock), whole run %.1fs",
				arch.Name, series, k.Release, res.InitAt.Seconds(), res.Duration.Seconds())
			defer func() {
				if t.Failed() {
					t.Logf("console:\n%s\noutput port:\n%s", res.Console, res.Output)
				}
			}()
			if res.ExitStatus != 0 {
				t.Errorf("scenario exit status %d, want 0", res.ExitStatus)
			}

			facts := keyValues(res.Section("facts"), "=")
			if facts["release"] != k.Release {
				t.Errorf("uname -r = %q, want %q", facts["release"], k.Release)
			}
			if !slices.Contains(strings.Fields(facts["controllers"]), "memory") {
				t.Errorf("cgroup.controllers = %q, want memory in it", facts["controllers"])
			}
			if facts["btf"] != "yes" {
				t.Errorf("/sys/kernel/btf/vmlinux missing")
			}
			if facts["tracing"] != "yes" {
				t.Errorf("tracefs not mounted at /sys/kernel/tracing")
			}
			// Node 1 has its 256 MiB less what the kernel reserves.
			if kib, _ := strconv.Atoi(facts["node1_kib"]); facts["nodes"] != "0-1" || facts["node1_cpus"] != "1" || kib < 200<<10 || kib > 256<<10 {
				t.Errorf("NUMA nodes online %q, node 1 CPUs %q and %s KiB: want nodes 0-1, CPU 1 and about 256 MiB on node 1",
					facts["nodes"], facts["node1_cpus"], facts["node1_kib"])
			}

			oom := keyValues(res.Section("oom"), " ")
			if oom["oom_kill"] != "1" {
				t.Errorf("memory.events oom_kill = %q, want 1", oom["oom_kill"])
			}
			if oom["hog_status"] != "137" {
				t.Errorf("memhog exit status %q, want 137 (SIGKILL)", oom["hog_status"])
			}
			hog := res.Section("hog")
			if !strings.Contains(hog, "memhog: touched 24 MiB") || strings.Contains(hog, "touched all") {
				t.Errorf("memhog output %q: want progress past 24 MiB and no end", hog)
			}
			for _, line := range strings.Split(strings.TrimSuffix(hog, "\n"), "\n") {
				if !strings.HasPrefix(line, "memhog: touched ") {
					t.Errorf("foreign line in section hog: %q", line)
				}
			}
		})
	}
}

// keyValues parses "key<sep>value" lines.
func keyValues(s, sep string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, sep); ok {
			m[k] = v
		}
	}
	return m
}
