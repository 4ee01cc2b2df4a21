// SPDX-License-Identifier: Apache-2.0

// Command kernelbtf writes the BTF a kernel image carries (CONFIG_DEBUG_INFO_BTF)
// to a file that `bpftool btf dump file` reads, without the kernel's debug
// package: scripts/gen-headers.sh runs it on Debian's vmlinuz to make
// headers/<arch>/vmlinux.h.
//
//	go run ./scripts/kernelbtf -o vmlinux.btf /boot/vmlinuz-…
//
// It reads an x86 bzImage (the compressed kernel is its payload), an arm64
// Image, plain or gzip'd, or an ELF vmlinux, and finds the BTF by its header.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
)

func main() {
	out := flag.String("o", "", "write the BTF blob here")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kernelbtf -o OUT.btf VMLINUZ")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out); err != nil {
		fmt.Fprintln(os.Stderr, "kernelbtf:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	img, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	kernel, err := decompress(img)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	blob, err := findBTF(kernel)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, blob, 0o644)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
)

// decompress returns the kernel inside a boot image, or the image itself
// when it is not compressed.
func decompress(img []byte) ([]byte, error) {
	if bytes.HasPrefix(img, gzipMagic) {
		return gunzip(img)
	}
	payload, ok := bzImagePayload(img)
	if !ok {
		return img, nil // an uncompressed Image or ELF
	}
	// The build appends the uncompressed size (4 bytes) to the payload;
	// the decompressors take the stream without it.
	switch {
	case bytes.HasPrefix(payload, gzipMagic):
		return gunzip(payload)
	case bytes.HasPrefix(payload, zstdMagic):
		return pipe(payload[:len(payload)-4], "zstd", "-dcq")
	case bytes.HasPrefix(payload, xzMagic):
		return pipe(payload[:len(payload)-4], "xz", "-dcq")
	}
	return nil, fmt.Errorf("bzImage payload starts with % x: not gzip, zstd or xz", payload[:min(len(payload), 6)])
}

// bzImagePayload is the compressed kernel of an x86 bzImage: the setup
// header (boot protocol 2.08+) says where it lies in the protected-mode part.
func bzImagePayload(img []byte) ([]byte, bool) {
	const (
		setupSectsOff    = 0x1f1
		headerMagicOff   = 0x202
		payloadOffsetOff = 0x248
		payloadLengthOff = 0x24c
	)
	if len(img) < payloadLengthOff+4 || string(img[headerMagicOff:headerMagicOff+4]) != "HdrS" {
		return nil, false
	}
	setupSects := int(img[setupSectsOff])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[payloadOffsetOff:]))
	end := start + int(binary.LittleEndian.Uint32(img[payloadLengthOff:]))
	if start >= end || end > len(img) || end-start < 8 {
		return nil, false
	}
	return img[start:end], true
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false) // the appended size is not a second member
	return io.ReadAll(zr)
}

func pipe(b []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// btfHeader is struct btf_header (include/uapi/linux/btf.h), little-endian.
type btfHeader struct {
	Magic   uint16
	Version uint8
	Flags   uint8
	HdrLen  uint32
	TypeOff uint32
	TypeLen uint32
	StrOff  uint32
	StrLen  uint32
}

const (
	btfMagic     = 0xeb9f
	btfHeaderLen = 24
)

// findBTF returns the largest well-formed BTF blob in kernel: the kernel's
// own is megabytes long, while a stray match of the 8 header bytes is not
// followed by consistent section offsets.
func findBTF(kernel []byte) ([]byte, error) {
	prefix := []byte{0x9f, 0xeb, 1, 0, btfHeaderLen, 0, 0, 0}
	var best []byte
	for off := 0; ; {
		i := bytes.Index(kernel[off:], prefix)
		if i < 0 {
			break
		}
		off += i
		if blob, ok := btfAt(kernel[off:]); ok && len(blob) > len(best) {
			best = blob
		}
		off++
	}
	if best == nil {
		return nil, errors.New("no BTF found (kernel built without CONFIG_DEBUG_INFO_BTF?)")
	}
	return best, nil
}

// btfAt returns the BTF blob starting at b, if b starts with one.
func btfAt(b []byte) ([]byte, bool) {
	var h btfHeader
	if _, err := binary.Decode(b, binary.LittleEndian, &h); err != nil {
		return nil, false
	}
	if h.Magic != btfMagic || h.Version != 1 || h.HdrLen != btfHeaderLen || h.TypeOff != 0 ||
		h.StrOff < h.TypeLen || h.StrLen == 0 {
		return nil, false
	}
	size := uint64(h.HdrLen) + uint64(h.StrOff) + uint64(h.StrLen)
	if size > uint64(len(b)) {
		return nil, false
	}
	strs := b[h.HdrLen+h.StrOff : size]
	// The string section starts with the empty string and ends with a NUL.
	if strs[0] != 0 || strs[len(strs)-1] != 0 {
		return nil, false
	}
	return b[:size], true
}
