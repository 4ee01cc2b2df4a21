// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// BuildStatic builds the Go package pkg (as `go build` names it, relative to
// dir) into out as a static amd64 binary (CGO_ENABLED=0), ready for the
// guest.
func BuildStatic(ctx context.Context, dir, pkg, out string) error {
	return BuildStaticFor(ctx, AMD64.Name, dir, pkg, out)
}

// BuildStaticFor is BuildStatic for a guest of architecture arch (GOARCH).
func BuildStaticFor(ctx context.Context, arch, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for %s: %w\n%s", pkg, arch, err, b)
	}
	return nil
}
