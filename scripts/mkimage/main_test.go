// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeSources writes the test image's two files (an executable and a
// plain one) and returns them as SRC=DST arguments.
func writeSources(t *testing.T, dir string) []string {
	t.Helper()
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("#!program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "conf")
	if err := os.WriteFile(conf, []byte("key=value\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return []string{bin + "=/usr/bin/prog", conf + "=/etc/prog/conf"}
}

// mkimage runs mkimage's command line and returns the archive's path.
func mkimage(t *testing.T, out string, files []string, extra ...string) string {
	t.Helper()
	argv := append([]string{
		"-o", out, "-tag", "oomtrace/test:v1.2.3", "-entrypoint", "/usr/bin/prog",
		"-arg", "agent", "-arg", "--flag=x", "-env", "A=1", "-user", "65534",
	}, extra...)
	argv = append(argv, files...)
	if err := run(argv, io.Discard); err != nil {
		t.Fatalf("mkimage %s: %v", strings.Join(argv, " "), err)
	}
	return out
}

// writeTestImage writes an archive of the two test files.
func writeTestImage(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	return mkimage(t, filepath.Join(dir, "image.tar"), writeSources(t, dir), extra...)
}

// TestArchiveReadsBack reads the archive as an image tool would: the tag
// names the image, the config holds the platform and how to start it, the
// layer holds the files with their modes.
func TestArchiveReadsBack(t *testing.T) {
	out := writeTestImage(t, t.TempDir())
	tag, err := name.NewTag("oomtrace/test:v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("reading %s as oomtrace/test:v1.2.3: %v", out, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if want := []string{"/usr/bin/prog"}; !slices.Equal(cfg.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cfg.Config.Entrypoint, want)
	}
	if want := []string{"agent", "--flag=x"}; !slices.Equal(cfg.Config.Cmd, want) {
		t.Errorf("cmd %q, want %q", cfg.Config.Cmd, want)
	}
	if want := []string{"A=1"}; !slices.Equal(cfg.Config.Env, want) {
		t.Errorf("env %q, want %q", cfg.Config.Env, want)
	}
	if cfg.Config.User != "65534" {
		t.Errorf("user %q, want 65534", cfg.Config.User)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}

	type entry struct {
		mode    int64
		content string
		isDir   bool
		uid     int
	}
	got := map[string]entry{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s: mtime %v, want the epoch (a build time would change the digest)", h.Name, h.ModTime)
		}
		got[strings.TrimSuffix(h.Name, "/")] = entry{h.Mode, string(data), h.Typeflag == tar.TypeDir, h.Uid}
	}
	want := map[string]entry{
		"usr":           {mode: 0o755, isDir: true},
		"usr/bin":       {mode: 0o755, isDir: true},
		"usr/bin/prog":  {mode: 0o755, content: "#!program\n"},
		"etc":           {mode: 0o755, isDir: true},
		"etc/prog":      {mode: 0o755, isDir: true},
		"etc/prog/conf": {mode: 0o640, content: "key=value\n"},
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s missing from the layer (has %v)", p, got)
			continue
		}
		if g != w {
			t.Errorf("%s: got %+v, want %+v", p, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("layer holds %d entries, want %d: %v", len(got), len(want), got)
	}
}

// TestArchiveIsReproducible builds the same files twice, the second time
// with other mtimes on them: the archives are identical, byte for byte.
func TestArchiveIsReproducible(t *testing.T) {
	dir := t.TempDir()
	files := writeSources(t, dir)
	a := mkimage(t, filepath.Join(dir, "a.tar"), files)
	other := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, f := range files {
		src, _, _ := strings.Cut(f, "=")
		if err := os.Chtimes(src, other, other); err != nil {
			t.Fatal(err)
		}
	}
	b := mkimage(t, filepath.Join(dir, "b.tar"), files)
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Error("two builds of the same files differ")
	}
}

// TestArm64 sets the platform an arm64 node's runtime selects by.
func TestArm64(t *testing.T) {
	out := writeTestImage(t, t.TempDir(), "-arch", "arm64")
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" || cfg.Variant != "v8" {
		t.Errorf("platform %s/%s, want arm64/v8", cfg.Architecture, cfg.Variant)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.tar")
	base := []string{"-o", out, "-tag", "a/b:v1", "-entrypoint", "/f"}
	for _, c := range []struct {
		name string
		argv []string
		want string
	}{
		{"no output", []string{"-tag", "a/b:v1", "-entrypoint", "/f", src + "=/f"}, "-o"},
		{"no tag", []string{"-o", out, "-tag", "a/b", "-entrypoint", "/f", src + "=/f"}, "no tag"},
		{"no entrypoint", []string{"-o", out, "-tag", "a/b:v1", src + "=/f"}, "-entrypoint"},
		{"relative entrypoint", []string{"-o", out, "-tag", "a/b:v1", "-entrypoint", "f", src + "=/f"}, "absolute"},
		{"no files", base, "no files"},
		{"not SRC=DST", append(slices.Clone(base), src), "SRC=DST"},
		{"relative DST", append(slices.Clone(base), src+"=f"), "absolute"},
		{"twice", append(slices.Clone(base), src+"=/f", src+"=/f"), "given twice"},
		{"arch", append(slices.Clone(base), "-arch", "mips", src+"=/f"), "amd64 or arm64"},
		{"env", append(slices.Clone(base), "-env", "NOEQUALS", src+"=/f"), "KEY=VALUE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := run(c.argv, io.Discard)
			var u usageError
			if !errors.As(err, &u) {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind", out)
	}
}
