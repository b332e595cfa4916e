package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/follow"
	repldspb "github.com/replds/replds/proto"
)

// TestApply_FailedSyncCommitsNothing: when the disk fails to make a page's
// files durable, the page fails as a whole. No file of it is in place, no
// temporary file is left, the state records none of it (so the page is
// applied again on the next session), and the next attempt writes it all.
// A failure of every fsync, of the first (in the early sync of the files
// kept open past maxOpenFiles) and of the last (at the flush, once earlier
// files are durable) are checked.
func TestApply_FailedSyncCommitsNothing(t *testing.T) {
	for _, tt := range []struct {
		name   string
		files  int
		failAt int64 // the file fsync that fails, counting from 1; 0: all
	}{
		{"every fsync of 3 files", 3, 0},
		{"first fsync past the open bound", maxOpenFiles + 5, 1},
		{"last fsync past the open bound", maxOpenFiles + 5, maxOpenFiles + 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "/p")
			h.bookmark(1, true, live("/p/old", 10, "before"))

			diskErr := errors.New("injected: I/O error")
			oldFile := syncFile
			t.Cleanup(func() { syncFile = oldFile })
			var calls atomic.Int64
			syncFile = func(f *os.File) error {
				if fi, err := f.Stat(); err == nil && fi.IsDir() {
					return oldFile(f)
				}
				if n := calls.Add(1); tt.failAt == 0 || n == tt.failAt {
					return diskErr
				}
				return oldFile(f)
			}

			page := []*repldspb.Node{live("/p/old", 22, "after")}
			want := map[string]string{"old": "after", "a/": ""}
			for i := range tt.files - 1 {
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

			syncFile = oldFile
			h.reopen()
			h.bookmark(2, false, page...)
			h.wantTree(want)
		})
	}
}

// syncCounts counts the fsyncs a test's pages ask for.
type syncCounts struct {
	mu          sync.Mutex
	files, dirs []string // names of the files and directories fsynced
}

// countSyncs replaces syncFile, for the rest of the test, with a working
// one that counts its calls (made from several goroutines).
func countSyncs(t *testing.T) *syncCounts {
	c := &syncCounts{}
	oldFile := syncFile
	t.Cleanup(func() { syncFile = oldFile })
	syncFile = func(f *os.File) error {
		fi, err := f.Stat()
		c.mu.Lock()
		if err == nil && fi.IsDir() {
			c.dirs = append(c.dirs, f.Name())
		} else {
			c.files = append(c.files, f.Name())
		}
		c.mu.Unlock()
		return oldFile(f)
	}
	return c
}

// repeated reports the first name in names that is there more than once.
func repeated(names []string) (string, bool) {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return n, true
		}
		seen[n] = true
	}
	return "", false
}

// TestMirror_EveryFileSyncedBeforeRename: a page of more files than the
// mirror keeps open fsyncs each of its files exactly once, and all of
// them before the first is renamed into place; its directory is fsynced
// after. Nothing syncs more than the page's own files.
func TestMirror_EveryFileSyncedBeforeRename(t *testing.T) {
	const files = 2*maxOpenFiles + 3
	m, dir := emptyMirror(t)
	t.Cleanup(func() { m.root.Close() })

	c := countSyncs(t)
	counted := syncFile
	var early atomic.Int64 // file fsyncs after the first rename
	syncFile = func(f *os.File) error {
		if fi, err := f.Stat(); err == nil && !fi.IsDir() {
			if _, err := os.Lstat(filepath.Join(dir, "f0000")); err == nil {
				early.Add(1)
			}
		}
		return counted(f)
	}
	d := dirty{}
	for i := range files {
		if _, err := m.writeFile(fmt.Sprintf("f%04d", i), []byte(fmt.Sprint(i)), d); err != nil {
			t.Fatalf("writeFile(f%04d) = %v", i, err)
		}
	}
	if err := m.syncDirs(d); err != nil {
		t.Fatalf("syncDirs = %v", err)
	}
	if len(c.files) != files {
		t.Errorf("%d file fsyncs for a page of %d files, want %d", len(c.files), files, files)
	}
	if name, ok := repeated(c.files); ok {
		t.Errorf("%s fsynced more than once", name)
	}
	for _, name := range c.files {
		if !strings.HasPrefix(filepath.Base(name), tmpPrefix) {
			t.Errorf("fsynced %s, want only the page's temporary files", name)
		}
	}
	if n := early.Load(); n != 0 {
		t.Errorf("%d files fsynced after the first rename, want all before", n)
	}
	if len(c.dirs) != 1 {
		t.Errorf("directory fsyncs = %v, want the mirror's once", c.dirs)
	}
	for i := range files {
		if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%04d", i))); err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("f%04d = %q, %v, want %q", i, b, err, fmt.Sprint(i))
		}
	}
}

// TestApply_TombstonesKeepPageBatched: a replay mixes tombstones with the
// live nodes. Neither those of paths the mirror never had nor those of
// files on disk written before the page flush the page's pending files:
// every file of the page is fsynced once, and the directory it is in
// once. The tombstone of a file written earlier in the same page still
// removes it.
func TestApply_TombstonesKeepPageBatched(t *testing.T) {
	const files = 40
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
	if len(c.files) != files+1 {
		t.Errorf("a page of %d files among %d tombstones took %d file fsyncs, want %d",
			files+1, 2*files+1, len(c.files), files+1)
	}
	var newDir int
	for _, d := range c.dirs {
		if filepath.Base(d) == "new" {
			newDir++
		}
	}
	if newDir != 1 {
		t.Errorf("directory fsyncs = %v, want new once", c.dirs)
	}
}

// TestAtomic_StagingDirsSynced: the staging snapshot is made durable by
// an fsync of each of its directories, once, whatever their number.
func TestAtomic_StagingDirsSynced(t *testing.T) {
	for _, dirs := range []int{3, 3 * syncWorkers} {
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
			if len(copied) != dirs+1 {
				t.Errorf("staging a copy of %d directories took %d directory fsyncs (%v), want %d",
					dirs+1, len(copied), copied, dirs+1)
			}
			if name, ok := repeated(copied); ok {
				t.Errorf("%s fsynced more than once", name)
			}
		})
	}
}

// BenchmarkMirror_Page writes a page of new files into an empty mirror
// and flushes it, as the replay of pull --once does page after page. The
// fsyncs are left out: they dominate, and vary with the disk and whatever
// else the machine writes.
func BenchmarkMirror_Page(b *testing.B) {
	oldFile := syncFile
	b.Cleanup(func() { syncFile = oldFile })
	syncFile = func(*os.File) error { return nil }
	for _, files := range []int{1000, 10000} {
		b.Run(fmt.Sprint(files, " files"), func(b *testing.B) {
			data := []byte("0123456789abcdef")
			for b.Loop() {
				b.StopTimer()
				m, _ := emptyMirror(b)
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
				m.root.Close()
				b.StartTimer()
			}
		})
	}
}

// emptyMirror returns a mirror of a new empty directory, and the
// directory. The caller closes its root.
func emptyMirror(tb testing.TB) (*mirror, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "mirror")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return &mirror{root: root, fileMode: 0o600, dirMode: 0o700, log: testLogger(tb)}, dir
}

// BenchmarkMirror_PageDurable writes pages of 1000 files of 1 KiB and
// makes them durable, real fsyncs included: quiet, and while another
// writer keeps dirtying a large file in the same filesystem (64 MiB/s,
// never synced), whose data a page must not wait for.
func BenchmarkMirror_PageDurable(b *testing.B) {
	const files = 1000
	data := make([]byte, 1024)
	for _, busy := range []bool{false, true} {
		b.Run(fmt.Sprint("busy=", busy), func(b *testing.B) {
			if busy {
				stop := dirtyInBackground(b, filepath.Join(b.TempDir(), "busy"))
				defer stop()
			}
			m, _ := emptyMirror(b)
			defer m.root.Close()
			page := 0
			for b.Loop() {
				page++
				d := dirty{}
				dir := fmt.Sprintf("p%d", page)
				if err := m.ensureDir(dir, d); err != nil {
					b.Fatal(err)
				}
				for i := range files {
					if _, err := m.writeFile(fmt.Sprintf("%s/f%04d", dir, i), data, d); err != nil {
						b.Fatal(err)
					}
				}
				if err := m.syncDirs(d); err != nil {
					b.Fatal(err)
				}
				m.dropPending()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*files), "ns/file")
		})
	}
}

// dirtyInBackground rewrites a 512 MiB file at name at 64 MiB/s, never
// syncing it, until the returned function is called; it starts with
// 256 MiB dirty.
func dirtyInBackground(tb testing.TB, name string) (stop func()) {
	const size, chunk, rate = 512 << 20, 1 << 20, 64 << 20
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, chunk)
	var off int64
	write := func() {
		buf[0]++
		if _, err := f.WriteAt(buf, off); err != nil {
			tb.Error(err)
		}
		off = (off + chunk) % size
	}
	for range 256 {
		write()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second / (rate / chunk))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				write()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		f.Close()
	}
}
