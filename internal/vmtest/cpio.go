// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Entry is one file of an initramfs. Build entries with Dir, Regular, HostFile,
// Symlink and CharDev.
type Entry struct {
	// Path is the path in the guest; a leading "/" is optional.
	Path string
	// Mode holds the permission bits and the type: 0 (regular file),
	// fs.ModeDir, fs.ModeSymlink or fs.ModeDevice|fs.ModeCharDevice.
	Mode fs.FileMode
	// Data is the content of a regular file, or the target of a symlink.
	Data []byte
	// Host, when set, is a host file whose content is streamed instead of Data.
	Host string
	// Major and Minor are the device numbers of a character device.
	Major, Minor uint32
}

// Dir is a directory entry.
func Dir(p string, perm fs.FileMode) Entry {
	return Entry{Path: p, Mode: fs.ModeDir | perm.Perm()}
}

// Regular is a regular file with the given content.
func Regular(p string, data []byte, perm fs.FileMode) Entry {
	return Entry{Path: p, Mode: perm.Perm(), Data: data}
}

// HostFile is a regular file copied from the host. A zero perm takes the host
// file's permission bits.
func HostFile(p, host string, perm fs.FileMode) Entry {
	return Entry{Path: p, Mode: perm.Perm(), Host: host}
}

// Symlink is a symbolic link to target.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)}
}

// CharDev is a character device node.
func CharDev(p string, perm fs.FileMode, major, minor uint32) Entry {
	return Entry{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor}
}

// Unix file type bits as cpio stores them (st_mode).
const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
)

// CPIOWriter writes a cpio archive in the "newc" format (magic 070701), the
// one the kernel unpacks as an initramfs. Parent directories that were not
// written explicitly are added (mode 0755) before their first child, because
// the kernel does not create missing parents while unpacking.
type CPIOWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	done bool
}

// NewCPIOWriter starts an archive on w. Call Close to write the trailer.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1, dirs: map[string]bool{".": true}}
}

// WriteCPIO writes entries as a complete newc archive to w.
func WriteCPIO(w io.Writer, entries []Entry) error {
	cw := NewCPIOWriter(w)
	for _, e := range entries {
		if err := cw.Write(e); err != nil {
			return err
		}
	}
	return cw.Close()
}

// Write adds one entry, after any missing parent directories.
func (c *CPIOWriter) Write(e Entry) error {
	if c.done {
		return fmt.Errorf("cpio: write %s after close", e.Path)
	}
	name := cleanName(e.Path)
	if name == "." {
		return fmt.Errorf("cpio: empty path")
	}
	if err := c.parents(name); err != nil {
		return err
	}
	switch {
	case e.Mode.IsDir():
		if c.dirs[name] {
			return nil // already written as a parent
		}
		c.dirs[name] = true
		return c.header(name, sIFDIR|uint32(e.Mode.Perm()), 0, 0, 0, nil)
	case e.Mode&fs.ModeSymlink != 0:
		return c.header(name, sIFLNK|0o777, int64(len(e.Data)), 0, 0, bytes.NewReader(e.Data))
	case e.Mode&fs.ModeCharDevice != 0:
		return c.header(name, sIFCHR|uint32(e.Mode.Perm()), 0, e.Major, e.Minor, nil)
	case e.Mode.IsRegular():
		if e.Host == "" {
			return c.header(name, sIFREG|uint32(e.Mode.Perm()), int64(len(e.Data)), 0, 0, bytes.NewReader(e.Data))
		}
		f, err := os.Open(e.Host)
		if err != nil {
			return fmt.Errorf("cpio: %s: %w", name, err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("cpio: %s: %w", name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("cpio: %s: host file %s is not a regular file", name, e.Host)
		}
		perm := e.Mode.Perm()
		if perm == 0 {
			perm = st.Mode().Perm()
		}
		return c.header(name, sIFREG|uint32(perm), st.Size(), 0, 0, f)
	default:
		return fmt.Errorf("cpio: %s: unsupported mode %v", name, e.Mode)
	}
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.done {
		return nil
	}
	c.done = true
	return c.record("TRAILER!!!", 0, 0, 0, 0, 0, 0, nil)
}

func (c *CPIOWriter) parents(name string) error {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return nil
	}
	if err := c.parents(dir); err != nil {
		return err
	}
	c.dirs[dir] = true
	return c.header(dir, sIFDIR|0o755, 0, 0, 0, nil)
}

func (c *CPIOWriter) header(name string, mode uint32, size int64, major, minor uint32, data io.Reader) error {
	c.ino++
	nlink := uint32(1)
	if mode&sIFMT == sIFDIR {
		nlink = 2
	}
	return c.record(name, c.ino, mode, nlink, size, major, minor, data)
}

// record writes one newc header, the NUL-terminated name and the data, each
// padded to a multiple of 4 bytes. Every header field is 8 hex digits.
func (c *CPIOWriter) record(name string, ino, mode, nlink uint32, size int64, rmajor, rminor uint32, data io.Reader) error {
	if size > 0xffffffff {
		return fmt.Errorf("cpio: %s: %d bytes is too large for newc", name, size)
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0)
	hdr.WriteString(name)
	hdr.WriteByte(0)
	hdr.Write(make([]byte, pad4(hdr.Len())))
	if _, err := c.w.Write(hdr.Bytes()); err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, err)
	}
	if size == 0 {
		return nil
	}
	n, err := io.Copy(c.w, io.LimitReader(data, size))
	if err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("cpio: write %s: short read, %d of %d bytes", name, n, size)
	}
	if _, err := c.w.Write(make([]byte, pad4(int(size%4)))); err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, err)
	}
	return nil
}

func pad4(n int) int { return (4 - n%4) % 4 }

// cleanName turns a guest path into the relative form the kernel expects
// ("bin/busybox", not "/bin/busybox").
func cleanName(p string) string {
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		return "."
	}
	return name
}
