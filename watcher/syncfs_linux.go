//go:build linux

package watcher

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// batchedSync: on Linux the files of a page are made durable together by
// one syncfs(2), not by an fsync each. Only from Linux 5.8 on, though:
// before, syncfs does not report writeback errors, and an I/O error would
// go unnoticed; older kernels (or one whose release cannot be read) fsync
// every file.
var batchedSync = syncfsReportsErrors(kernelRelease())

// syncFS is syncfs, replaced in tests by a failing disk.
var syncFS = syncfs

// syncfs flushes the whole filesystem that holds f (a directory opened
// before the page's files were written). Since Linux 5.8, syncfs reports a
// writeback error that happened anywhere on that filesystem after f was
// opened, which is why f is opened first; older kernels report none, and
// batchedSync is false there.
func syncfs(f *os.File) error {
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

// kernelRelease returns the running kernel's release (uname -r), or ""
// when uname fails.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// syncfsReportsErrors reports whether a kernel of that release (such as
// "5.10.1" or "4.18.0-553.el8") is at least 5.8, the first whose syncfs
// returns writeback errors. A release it cannot read is taken as older.
func syncfsReportsErrors(release string) bool {
	major, rest, ok := leadingNumber(release)
	if !ok || rest == "" || rest[0] != '.' {
		return false
	}
	// The minor number may be followed by anything: "8", "8-rc1", "8.0".
	minor, _, ok := leadingNumber(rest[1:])
	if !ok {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

// leadingNumber parses the decimal digits that start s and returns the
// rest of s; ok is false when s does not start with a digit or the number
// is too large.
func leadingNumber(s string) (n int, rest string, ok bool) {
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	n, err := strconv.Atoi(s[:end])
	return n, s[end:], err == nil
}
