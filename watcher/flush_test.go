package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	repldspb "replds/proto"
)

// TestApply_FailedSyncCommitsNothing: when the disk fails to make a page's
// files durable, the page fails as a whole. No file of it is in place, no
// temporary file is left, the state records none of it (so the page is
// applied again on the next session), and the next attempt writes it all.
// A small page fsyncs its files one by one, a large one syncs the
// filesystem once: both are checked.
func TestApply_FailedSyncCommitsNothing(t *testing.T) {
	if !batchedSync {
		t.Skip("files are fsynced one by one on this platform")
	}
	for _, files := range []int{3, fsyncFew + 5} {
		t.Run(fmt.Sprint(files, " files"), func(t *testing.T) {
			h := newHarness(t, "/p")
			h.bookmark(1, true, live("/p/old", 10, "before"))

			diskErr := errors.New("injected: I/O error")
			oldFS, oldFile := syncFS, syncFile
			t.Cleanup(func() { syncFS, syncFile = oldFS, oldFile })
			syncFS = func(*os.File) error { return diskErr }
			syncFile = func(*os.File) error { return diskErr }

			page := []*repldspb.Node{live("/p/old", 22, "after")}
			want := map[string]string{"old": "after", "a/": ""}
			for i := range files - 1 {
				page = append(page, live(fmt.Sprintf("/p/a/%d", i), uint64(30+i), fmt.Sprint(i)))
				want[fmt.Sprintf("a/%d", i)] = fmt.Sprint(i)
			}
			_, err := h.r.handle(context.Background(), &repldspb.WatchResponse{Nodes: page}, &h.full)
			if !errors.Is(err, diskErr) {
				t.Fatalf("handle(page) with a failing disk = %v, want the disk's error", err)
			}
			h.wantFile("old", "before")
			for name := range want {
				if name != "old" && name != "a/" {
					h.wantGone(name)
				}
			}
			filepath.WalkDir(h.cfg.Dir, func(p string, e fs.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(e.Name(), tmpPrefix) {
					t.Errorf("temporary file %s left behind", p)
				}
				return nil
			})
			h.a.db.View(func(tx *bolt.Tx) error {
				for _, n := range page {
					if v := tx.Bucket(bucketNodes).Get([]byte(n.Path)); v != nil {
						if r, _ := decodeNodeRec(v); r.Version == n.Version {
							t.Errorf("state records %s at version %d after the failed page", n.Path, r.Version)
						}
					}
				}
				return nil
			})

			syncFS, syncFile = oldFS, oldFile
			h.reopen()
			h.bookmark(2, false, page...)
			h.wantTree(want)
		})
	}
}
