// SPDX-License-Identifier: Apache-2.0

// mkimage writes a one-layer container image archive from local files,
// without a container engine or a registry: the archive is in the format
// `docker save` writes, which `ctr -n k8s.io images import` and
// `docker load` accept.
//
//	go run ./scripts/mkimage -o bin/x.tar -tag oomtrace/oomtrace:v1 \
//	    -entrypoint /oomtrace bin/oomtrace=/oomtrace
//
// Each file argument is SRC=DST: the file SRC on this machine becomes DST
// in the image, owned by root, with SRC's permission bits. The image has
// no base (no shell, no libc): it suits static binaries. The same inputs
// give the same archive, byte for byte: every timestamp in it is fixed.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is every timestamp in the image (file mtimes, the config's
// created time): a fixed one, so the digest depends on the content only.
var epoch = time.Unix(0, 0).UTC()

// spec is what an image is built from.
type spec struct {
	tag        string
	entrypoint []string
	args       []string
	env        []string
	user       string
	workdir    string
	arch       string
	files      []file
	dirs       []string // empty directories to create, e.g. a mount point
}

// file is one SRC=DST argument.
type file struct {
	src, dst string
}

// architectures maps -arch to the platform fields of the image config.
var architectures = map[string]struct{ arch, variant string }{
	"amd64": {"amd64", ""},
	"arm64": {"arm64", "v8"},
}

// multiFlag collects a flag given more than once.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake in how mkimage was called (exit 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func run(argv []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mkimage -o FILE -tag NAME:TAG -entrypoint PATH [flags] SRC=DST...")
		fs.PrintDefaults()
	}
	var (
		s          spec
		out        string
		entrypoint string
		args, env  multiFlag
		dirs       multiFlag
	)
	fs.StringVar(&out, "o", "", "write the image archive to `FILE`")
	fs.StringVar(&s.tag, "tag", "", "image name and tag, e.g. oomtrace/oomtrace:v1")
	fs.StringVar(&entrypoint, "entrypoint", "", "the program the container runs (an absolute `PATH` in the image)")
	fs.Var(&args, "arg", "an argument after the entrypoint (the image's Cmd; repeat for more)")
	fs.Var(&env, "env", "an environment variable `KEY=VALUE` (repeat for more)")
	fs.StringVar(&s.user, "user", "", "user (and group) the container runs as, e.g. 65534 or 0:0; empty: root")
	fs.StringVar(&s.workdir, "workdir", "", "working directory in the image")
	fs.StringVar(&s.arch, "arch", "amd64", "image architecture: amd64 or arm64 (the files must match)")
	fs.Var(&dirs, "dir", "an empty directory to create in the image, e.g. a mount point (repeat for more)")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if out == "" {
		return usagef("-o: the output file is required")
	}
	if entrypoint == "" {
		return usagef("-entrypoint: the program to run is required")
	}
	s.entrypoint = []string{entrypoint}
	s.args, s.env, s.dirs = args, env, dirs
	for _, a := range fs.Args() {
		src, dst, ok := strings.Cut(a, "=")
		if !ok || src == "" || dst == "" {
			return usagef("%q: want SRC=DST, a file on this machine and its path in the image", a)
		}
		s.files = append(s.files, file{src: src, dst: dst})
	}
	if len(s.files) == 0 {
		return usagef("no files: give at least one SRC=DST")
	}
	if err := s.validate(); err != nil {
		return err
	}
	return writeArchive(out, s)
}

// validate checks what can be checked before reading any file.
func (s spec) validate() error {
	if _, err := parseTag(s.tag); err != nil {
		return usagef("-tag %q: want NAME:TAG, e.g. oomtrace/oomtrace:v1 (%v)", s.tag, err)
	}
	if _, ok := architectures[s.arch]; !ok {
		return usagef("-arch %q: want amd64 or arm64", s.arch)
	}
	if !path.IsAbs(s.entrypoint[0]) {
		return usagef("-entrypoint %q: want an absolute path in the image", s.entrypoint[0])
	}
	for _, e := range s.env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usagef("-env %q: want KEY=VALUE", e)
		}
	}
	seen := map[string]bool{}
	for _, f := range s.files {
		if !path.IsAbs(f.dst) || path.Clean(f.dst) == "/" {
			return usagef("%s=%s: the path in the image must be absolute and name a file", f.src, f.dst)
		}
		if seen[path.Clean(f.dst)] {
			return usagef("%s: given twice", f.dst)
		}
		seen[path.Clean(f.dst)] = true
	}
	for _, d := range s.dirs {
		if !path.IsAbs(d) {
			return usagef("-dir %q: want an absolute path", d)
		}
	}
	return nil
}

// parseTag reads NAME:TAG. The tag must be given: a missing one would
// silently become "latest", which kubelet then tries to pull.
func parseTag(s string) (name.Tag, error) {
	if !strings.Contains(path.Base(s), ":") {
		return name.Tag{}, errors.New("no tag after the name")
	}
	return name.NewTag(s)
}

// writeArchive builds the image and writes it to out (through a temporary
// file, so a failed run leaves no half-written archive behind).
func writeArchive(out string, s spec) error {
	img, err := build(s)
	if err != nil {
		return err
	}
	tag, err := parseTag(s.tag)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(path.Dir(out), ".mkimage-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarball.Write(tag, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; an archive is no secret.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// build makes the image: one layer holding the files, and a config with
// the platform, entrypoint and environment.
func build(s spec) (v1.Image, error) {
	layerTar, err := layerTar(s.files, s.dirs)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage"},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	platform := architectures[s.arch]
	cfg.OS = "linux"
	cfg.Architecture = platform.arch
	cfg.Variant = platform.variant
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config = v1.Config{
		Entrypoint: s.entrypoint,
		Cmd:        s.args,
		Env:        s.env,
		User:       s.user,
		WorkingDir: s.workdir,
	}
	return mutate.ConfigFile(img, cfg)
}

// layerTar is the layer's content: the files and their parent
// directories, in a fixed order, owned by root, every mtime the epoch.
func layerTar(files []file, dirs []string) ([]byte, error) {
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	entries := map[string]entry{}
	addDir := func(p string) {
		for d := p; d != "/" && d != "."; d = path.Dir(d) {
			name := strings.TrimPrefix(d, "/") + "/"
			if _, ok := entries[name]; !ok {
				entries[name] = entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
			}
		}
	}
	for _, d := range dirs {
		addDir(path.Clean(d))
	}
	for _, f := range files {
		dst := path.Clean(f.dst)
		st, err := os.Stat(f.src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", f.src)
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		addDir(path.Dir(dst))
		name := strings.TrimPrefix(dst, "/")
		entries[name] = entry{
			hdr: &tar.Header{
				Typeflag: tar.TypeReg,
				Name:     name,
				Mode:     int64(st.Mode().Perm()),
				Size:     int64(len(data)),
			},
			data: data,
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// Sorted, a directory comes before what it holds.
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = epoch
		e.hdr.Uname, e.hdr.Gname = "root", "root"
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
