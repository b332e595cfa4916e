//go:build !linux

package watcher

import "os"

// batchedSync: without syncfs(2), every file is fsynced as it is written.
const batchedSync = false

var syncFS = func(*os.File) error { return nil }
