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

// Series lists the kernel series that fetch-kernels.sh knows, oldest first.
var Series = []string{"5.10", "6.1", "6.12"}

// ErrNoKernel is wrapped by FindKernel when a series is not cached, so tests
// can skip instead of fail.
var ErrNoKernel = errors.New("kernel not cached")

// Kernel is a cached kernel image.
type Kernel struct {
	Series  string // "6.1"
	Release string // `uname -r` in the guest, e.g. "6.1.0-37-cloud-amd64"
	Vmlinuz string // path of the bzImage
}

// CacheDir is $OOMTRACE_VM_CACHE, or DefaultCache.
func CacheDir() string {
	if d := os.Getenv("OOMTRACE_VM_CACHE"); d != "" {
		return d
	}
	return DefaultCache
}

// FindKernel returns the cached kernel of a series (kernels/<series>/ with
// vmlinuz and version under CacheDir).
func FindKernel(series string) (Kernel, error) {
	dir := filepath.Join(CacheDir(), "kernels", series)
	hint := fmt.Sprintf("run scripts/vm/fetch-kernels.sh %s", series)
	b, err := os.ReadFile(filepath.Join(dir, "version"))
	if errors.Is(err, os.ErrNotExist) {
		return Kernel{}, fmt.Errorf("find kernel %s: %w in %s: %s", series, ErrNoKernel, dir, hint)
	}
	if err != nil {
		return Kernel{}, fmt.Errorf("find kernel %s: %w", series, err)
	}
	k := Kernel{Series: series, Release: strings.TrimSpace(string(b)), Vmlinuz: filepath.Join(dir, "vmlinuz")}
	if k.Release == "" {
		return Kernel{}, fmt.Errorf("find kernel %s: %w: %s is empty: %s", series, ErrNoKernel, filepath.Join(dir, "version"), hint)
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return Kernel{}, fmt.Errorf("find kernel %s: %w: %v: %s", series, ErrNoKernel, err, hint)
	}
	return k, nil
}

// HeadersDir is the kbuild tree that `fetch-kernels.sh --headers` unpacks for
// k, for `make -C <dir> M=$PWD modules`. It may not exist.
func (k Kernel) HeadersDir() string {
	return filepath.Join(filepath.Dir(k.Vmlinuz), "headers")
}
