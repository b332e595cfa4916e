//go:build linux

package watcher

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing f's dirty pages to the disk without
// waiting (sync_file_range(2) with SYNC_FILE_RANGE_WRITE), so that by the
// page's fsyncs most of its data is on the way: the fsync then waits for
// little but the inode and the device's cache flush. It makes nothing
// durable and flushes no other file. A filesystem that cannot do it is no
// error: the fsync writes the data itself.
func startWriteback(f *os.File) error {
	err := unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	if err == nil || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ESPIPE) {
		return nil
	}
	return fmt.Errorf("start writeback: %w", err)
}
