//go:build linux

package watcher

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// batchedSync: on Linux the files of a page are made durable together by
// one syncfs(2), not by an fsync each.
const batchedSync = true

// syncFS is syncfs, replaced in tests by a failing disk.
var syncFS = syncfs

// syncfs flushes the whole filesystem that holds f (a directory opened
// before the page's files were written). Since Linux 5.8, syncfs reports a
// writeback error that happened anywhere on that filesystem after f was
// opened, which is why f is opened first; older kernels report none.
func syncfs(f *os.File) error {
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}
