// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultCache is where scripts/vm/fetch-kernels.sh puts kernels unless
// OOMTRACE_VM_CACHE says otherwise.
const DefaultCache = "/var/cache/oomtrace-vm"

// Series lists the amd64 kernel series that fetch-kernels.sh knows, oldest
// first: three Debian releases' kernels, and "newest", the highest cloud
// kernel in the archive's newer suites (backports, testing, unstable), which
// moves with them.
var Series = []string{"5.10", "6.1", "6.12", "newest"}

// SeriesOf lists the kernel series of an architecture, oldest first.
func SeriesOf(arch string) []string {
	if arch == ARM64.Name {
		return []string{"5.10", "6.1", "6.12"}
	}
	return Series
}

// ErrNoKernel is wrapped by FindKernel when a series is not cached, so tests
// can skip instead of fail.
var ErrNoKernel = errors.New("kernel not cached")

// Kernel is a cached kernel image.
type Kernel struct {
	Arch    string // "amd64" (also when empty), "arm64"
	Series  string // "6.1"
	Release string // `uname -r` in the guest, e.g. "6.1.0-37-cloud-amd64"
	Vmlinuz string // path of the kernel image
}

// Name is the series, with the architecture for any but amd64: "6.1",
// "6.1-arm64", as the cache and fetch-kernels.sh name it.
func (k Kernel) Name() string {
	if k.Arch == "" || k.Arch == AMD64.Name {
		return k.Series
	}
	return k.Series + "-" + k.Arch
}

func (k Kernel) arch() (Arch, error) {
	if k.Arch == "" {
		return AMD64, nil
	}
	return ArchByName(k.Arch)
}

// CacheDir is $OOMTRACE_VM_CACHE, or DefaultCache.
func CacheDir() string {
	if d := os.Getenv("OOMTRACE_VM_CACHE"); d != "" {
		return d
	}
	return DefaultCache
}

// FindKernel returns the cached amd64 kernel of a series (kernels/<series>/
// with vmlinuz and version under CacheDir).
func FindKernel(series string) (Kernel, error) {
	return FindArchKernel(AMD64.Name, series)
}

// FindArchKernel returns the cached kernel of a series and architecture
// (kernels/<Kernel.Name>/ under CacheDir).
func FindArchKernel(arch, series string) (Kernel, error) {
	k := Kernel{Arch: arch, Series: series}
	name := k.Name()
	dir := filepath.Join(CacheDir(), "kernels", name)
	hint := fmt.Sprintf("run scripts/vm/fetch-kernels.sh --arch %s %s", arch, series)
	b, err := os.ReadFile(filepath.Join(dir, "version"))
	if errors.Is(err, os.ErrNotExist) {
		return Kernel{}, fmt.Errorf("find kernel %s: %w in %s: %s", name, ErrNoKernel, dir, hint)
	}
	if err != nil {
		return Kernel{}, fmt.Errorf("find kernel %s: %w", name, err)
	}
	k.Release, k.Vmlinuz = strings.TrimSpace(string(b)), filepath.Join(dir, "vmlinuz")
	if k.Release == "" {
		return Kernel{}, fmt.Errorf("find kernel %s: %w: %s is empty: %s", name, ErrNoKernel, filepath.Join(dir, "version"), hint)
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return Kernel{}, fmt.Errorf("find kernel %s: %w: %v: %s", name, ErrNoKernel, err, hint)
	}
	return k, nil
}

// HeadersDir is the kbuild tree that `fetch-kernels.sh --headers` unpacks for
// k, for `make -C <dir> M=$PWD modules`. It may not exist.
func (k Kernel) HeadersDir() string {
	return filepath.Join(filepath.Dir(k.Vmlinuz), "headers")
}
