//go:build linux

package watcher

import "testing"

// TestSyncfsReportsErrors: syncfs is trusted from Linux 5.8 on, whatever
// follows the version numbers; anything unreadable counts as older.
func TestSyncfsReportsErrors(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    bool
	}{
		{"4.18.0-553.el8", false},
		{"5.7.19", false},
		{"5.8", true},
		{"5.8.0", true},
		{"5.8-rc1", true},
		{"5.10.1", true},
		{"6.1.0-18-amd64", true},
		{"6.18.44-fc-v769", true},
		{"10.0.0", true},
		{"4.80.0", false},
		{"2.6.32-754.el6.x86_64", false},
		{"", false},
		{"garbage", false},
		{"6", false},
		{"6.", false},
		{"6.x", false},
		{"+6.1", false},
		{"v6.1", false},
		{"99999999999999999999.1", false},
	} {
		if got := syncfsReportsErrors(tt.release); got != tt.want {
			t.Errorf("syncfsReportsErrors(%q) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

// TestBatchedSyncFollowsKernel: batchedSync is decided by the running
// kernel's release, which uname gives.
func TestBatchedSyncFollowsKernel(t *testing.T) {
	release := kernelRelease()
	if release == "" {
		t.Fatal("kernelRelease() = \"\", want uname's release")
	}
	if want := syncfsReportsErrors(release); batchedSync != want {
		t.Errorf("batchedSync = %v on kernel %s, want %v", batchedSync, release, want)
	}
}
