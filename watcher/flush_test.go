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

	"github.com/replds/replds/follow"
	repldspb "github.com/replds/replds/proto"
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
			_, err := follow.Handle(context.Background(), h.a, &repldspb.WatchResponse{Nodes: page}, &h.full)
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
			h.a.st.db.View(func(tx *bolt.Tx) error {
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

// syncCounts counts the syncs a test's pages ask for.
type syncCounts struct {
	fs          int      // syncfs calls
	files, dirs []string // names of the files and directories fsynced
}

// countSyncs replaces syncFS and syncFile, for the rest of the test, with
// working ones that count their calls.
func countSyncs(t *testing.T) *syncCounts {
	c := &syncCounts{}
	oldFS, oldFile := syncFS, syncFile
	t.Cleanup(func() { syncFS, syncFile = oldFS, oldFile })
	syncFS = func(f *os.File) error {
		c.fs++
		return oldFS(f)
	}
	syncFile = func(f *os.File) error {
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			c.dirs = append(c.dirs, f.Name())
		} else {
			c.files = append(c.files, f.Name())
		}
		return oldFile(f)
	}
	return c
}

// TestApply_TombstonesKeepPageBatched: a replay mixes tombstones with the
// live nodes. Neither those of paths the mirror never had nor those of
// files on disk written before the page flush the page's pending files:
// a page of many files still takes one syncfs and no fsync of a file.
// The tombstone of a file written earlier in the same page still removes
// it.
func TestApply_TombstonesKeepPageBatched(t *testing.T) {
	if !batchedSync {
		t.Skip("files are fsynced one by one on this platform")
	}
	const files = 4 * fsyncFew
	h := newHarness(t, "/p")
	var old []*repldspb.Node
	for i := range files {
		old = append(old, live(fmt.Sprintf("/p/old/%d", i), 1, "old"))
	}
	h.bookmark(1, true, old...)

	c := countSyncs(t)
	var page []*repldspb.Node
	want := map[string]string{"new/": ""}
	for i := range files {
		page = append(page,
			live(fmt.Sprintf("/p/new/%d", i), 10, fmt.Sprint(i)),
			tomb(fmt.Sprintf("/p/never/%d", i), 10),
			tomb(fmt.Sprintf("/p/old/%d", i), 10))
		want[fmt.Sprintf("new/%d", i)] = fmt.Sprint(i)
	}
	page = append(page, live("/p/new/gone", 10, "x"), tomb("/p/new/gone", 11))
	h.bookmark(2, false, page...)
	h.wantTree(want)
	if c.fs != 1 || len(c.files) != 0 {
		t.Errorf("a page of %d files among %d tombstones took %d syncfs and %d file fsyncs, want 1 and 0",
			files+1, 2*files+1, c.fs, len(c.files))
	}
}

// TestAtomic_StagingSyncedOnce: the staging snapshot of a mirror with
// many directories is made durable by one syncfs, not by an fsync of each
// of its directories; a mirror with few directories fsyncs them.
func TestAtomic_StagingSyncedOnce(t *testing.T) {
	if !batchedSync {
		t.Skip("directories are fsynced one by one on this platform")
	}
	for _, dirs := range []int{fsyncFew - 1, 3 * fsyncFew} {
		t.Run(fmt.Sprint(dirs, " directories"), func(t *testing.T) {
			h := newHarness(t, "/p", atomicMode)
			var nodes []*repldspb.Node
			want := map[string]string{"top": "2"}
			for i := range dirs {
				nodes = append(nodes, live(fmt.Sprintf("/p/d%d/f", i), 1, "f"))
				want[fmt.Sprintf("d%d/", i)] = ""
				want[fmt.Sprintf("d%d/f", i)] = "f"
			}
			h.bookmark(1, true, append(nodes, live("/p/top", 1, "1"))...)

			c := countSyncs(t)
			h.bookmark(2, false, live("/p/top", 2, "2"))
			h.wantTree(want)
			// The copy is made under a temporary name.
			var copied []string
			for _, d := range c.dirs {
				if strings.Contains(d, tmpPrefix) {
					copied = append(copied, d)
				}
			}
			// The copy has the snapshot's directories and its own top.
			wantFS, wantCopied := 0, dirs+1
			if dirs+1 > fsyncFew {
				wantFS, wantCopied = 1, 0
			}
			if c.fs != wantFS || len(copied) != wantCopied {
				t.Errorf("staging a copy of %d directories took %d syncfs and %d directory fsyncs (%v), want %d and %d",
					dirs+1, c.fs, len(copied), copied, wantFS, wantCopied)
			}
		})
	}
}

// BenchmarkMirror_Page writes a page of new files into an empty mirror
// and flushes it, as the replay of pull --once does page after page. The
// filesystem sync is left out: it dominates, and varies with the disk and
// whatever else the machine writes.
func BenchmarkMirror_Page(b *testing.B) {
	oldFS := syncFS
	b.Cleanup(func() { syncFS = oldFS })
	syncFS = func(*os.File) error { return nil }
	for _, files := range []int{1000, 10000} {
		b.Run(fmt.Sprint(files, " files"), func(b *testing.B) {
			data := []byte("0123456789abcdef")
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "mirror")
				if err := os.Mkdir(dir, 0o700); err != nil {
					b.Fatal(err)
				}
				root, err := os.OpenRoot(dir)
				if err != nil {
					b.Fatal(err)
				}
				m := &mirror{root: root, fileMode: 0o600, dirMode: 0o700, log: testLogger(b)}
				d := dirty{}
				b.StartTimer()
				for i := range files {
					if _, err := m.writeFile(fmt.Sprintf("f%06d", i), data, d); err != nil {
						b.Fatal(err)
					}
				}
				if err := m.syncDirs(d); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				m.dropPending()
				root.Close()
				b.StartTimer()
			}
		})
	}
}
