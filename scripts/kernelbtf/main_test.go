// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"testing"
)

// fakeBTF is a well-formed BTF blob: header, typeLen bytes of types, and a
// string section of the empty string plus "task_struct".
func fakeBTF(typeLen int) []byte {
	strs := []byte("\x00task_struct\x00")
	h := btfHeader{Magic: btfMagic, Version: 1, HdrLen: btfHeaderLen,
		TypeLen: uint32(typeLen), StrOff: uint32(typeLen), StrLen: uint32(len(strs))}
	b, _ := binary.Append(nil, binary.LittleEndian, h)
	b = append(b, bytes.Repeat([]byte{0x55}, typeLen)...)
	return append(b, strs...)
}

func TestFindBTFTakesTheWellFormedBlob(t *testing.T) {
	want := fakeBTF(4096)
	// A stray header prefix whose sizes run past the image, a small
	// well-formed blob (as a module's might be), then the kernel's.
	stray := append([]byte{0x9f, 0xeb, 1, 0, 24, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 16)...)
	img := bytes.Join([][]byte{[]byte("Image header"), stray, fakeBTF(16), []byte("code"), want, []byte("tail")}, nil)

	got, err := findBTF(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("found %d bytes, want the %d-byte blob", len(got), len(want))
	}
}

func TestFindBTFSaysWhenThereIsNone(t *testing.T) {
	if _, err := findBTF([]byte("a kernel built without BTF")); err == nil {
		t.Error("no error for an image without BTF")
	}
}

func TestDecompressGzipImage(t *testing.T) {
	kernel := append([]byte("ARMd"), fakeBTF(64)...)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(kernel)
	zw.Close()
	got, err := decompress(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernel) {
		t.Errorf("decompressed %d bytes, want %d", len(got), len(kernel))
	}
}

func TestDecompressBzImageGzipPayload(t *testing.T) {
	kernel := append([]byte("\x7fELF"), fakeBTF(64)...)
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	zw.Write(kernel)
	zw.Close()
	payload.Write([]byte{1, 2, 3, 4}) // the appended size

	const setupSects = 1
	img := make([]byte, (setupSects+1)*512+100)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint32(img[0x248:], 100)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(payload.Len()))
	img = append(img, payload.Bytes()...)

	got, err := decompress(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernel) {
		t.Errorf("decompressed %d bytes, want %d", len(got), len(kernel))
	}
}
