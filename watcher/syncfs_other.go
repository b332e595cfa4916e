//go:build !linux

package watcher

import "os"

// batchedSync: without syncfs(2), every file is fsynced as it is written.
// A variable, as on Linux, where it depends on the kernel.
var batchedSync = false

var syncFS = func(*os.File) error { return nil }
