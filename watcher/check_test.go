package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
)

// replayAll sends, as a server would after a reset, nodes as one complete
// replay ending in a synced bookmark.
func (h *harness) replayAll(seq uint64, nodes ...*repldspb.Node) {
	h.t.Helper()
	if !h.full {
		h.t.Fatal("the session does not replay in full; want the check to have asked for it")
	}
	h.bookmark(seq, true, nodes...)
}

// TestCheck_RepairsDrift: a file deleted, edited, replaced by a directory
// or a symlink, or under a parent replaced by a file, is found at start
// and written again at the version applied, by a full replay the check
// asks for; a file whose mode changed gets it back; intact files are not
// hashed.
func TestCheck_RepairsDrift(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{"all": "/p"}))
	nodes := []*repldspb.Node{
		live("/p/deleted", 1, "D"), live("/p/edited", 2, "E"), live("/p/dir", 3, "R"),
		live("/p/link", 4, "L"), live("/p/sub/under", 5, "U"), live("/p/mode", 6, "M"),
		live("/p/intact", 7, "I"),
	}
	h.bookmark(7, true, nodes...)
	want := map[string]string{"deleted": "D", "edited": "E", "dir": "R", "link": "L", "sub/": "", "sub/under": "U", "mode": "M", "intact": "I"}
	h.wantTree(want)
	h.close()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Remove(h.local("deleted")))
	must(os.WriteFile(h.local("edited"), []byte("X"), 0o600)) // same size
	must(os.Remove(h.local("dir")))
	must(os.Mkdir(h.local("dir"), 0o700))
	must(os.Remove(h.local("link")))
	must(os.Symlink("intact", h.local("link")))
	must(os.RemoveAll(h.local("sub")))
	must(os.WriteFile(h.local("sub"), []byte("not a dir"), 0o600))
	must(os.Chmod(h.local("mode"), 0o644))

	h.open()
	repair, blocked, err := h.a.st.unconverged()
	must(err)
	wantRepair := []string{"/p/deleted", "/p/dir", "/p/edited", "/p/link", "/p/sub/under"}
	if !reflect.DeepEqual(repair, wantRepair) || len(blocked) != 0 {
		t.Fatalf("after the check: repair %v, blocked %v; want repair %v", repair, blocked, wantRepair)
	}
	if fi, err := os.Stat(h.local("mode")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after the check: %v, %v; want 0600", fi.Mode(), err)
	}
	h.replayAll(8, nodes...)
	h.wantTree(want)
	if repair, blocked, _ := h.a.st.unconverged(); len(repair)+len(blocked) != 0 || len(h.a.unconverged) != 0 {
		t.Fatalf("after the replay: repair %v, blocked %v, unconverged %v; want none", repair, blocked, h.a.unconverged)
	}
	// The trigger hears of the rewritten files as changed.
	runs := h.runs()
	if len(runs) != 2 {
		t.Fatalf("trigger runs = %+v, want 2", runs)
	}
	if got := runs[1].Changes; !reflect.DeepEqual(got.Changed, wantRepair) || len(got.Added)+len(got.Deleted) != 0 {
		t.Errorf("repair run changes = %+v, want changed %v", got, wantRepair)
	}

	// A second check finds nothing to hash: every summary is current.
	st, err := h.a.check(context.Background())
	must(err)
	if st != (checkStats{Files: 7}) {
		t.Errorf("second check = %+v, want 7 files, nothing hashed or drifted", st)
	}
	// A touched file is hashed once, found intact, and its new stat kept.
	must(os.Chtimes(h.local("intact"), time.Now(), time.Now().Add(time.Hour)))
	st, err = h.a.check(context.Background())
	must(err)
	if st != (checkStats{Files: 7, Hashed: 1}) {
		t.Errorf("check after touch = %+v, want one file hashed, none drifted", st)
	}
	st, err = h.a.check(context.Background())
	must(err)
	if st != (checkStats{Files: 7}) {
		t.Errorf("check after that = %+v, want nothing hashed", st)
	}
}

// TestCheck_ServerBehindKeepsRepairPending: a replay that brings an older
// version of a drifted leaf (a server behind) does not write it: versions
// never go back, and the leaf stays pending, reported after the sync.
func TestCheck_ServerBehindKeepsRepairPending(t *testing.T) {
	h := newHarness(t, "/p", func(c *Config) { c.Follow.Once = true })
	h.bookmark(1, true, live("/p/a", 5, "v5"))
	h.close()
	if err := os.Remove(h.local("a")); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.replayAll(2, live("/p/a", 4, "v4"))
	h.wantGone("a")
	if want := []string{"/p/a (drifted, not brought again by the server)"}; !reflect.DeepEqual(h.a.unconverged, want) {
		t.Fatalf("unconverged = %v, want %v", h.a.unconverged, want)
	}
	// The next session's replay, from an up-to-date server, repairs it.
	h.reopen()
	h.replayAll(3, live("/p/a", 5, "v5"))
	h.wantFile("a", "v5")
	if len(h.a.unconverged) != 0 {
		t.Fatalf("unconverged = %v, want none", h.a.unconverged)
	}
}

// TestCheck_UpgradesOldRecords: records without a file summary (a state
// written before schema 2) are hashed once and get one; nothing is
// refetched.
func TestCheck_UpgradesOldRecords(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 1, "A"), live("/p/b/c", 2, "C"))
	p, err := h.a.st.begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, rp := range []string{"/p/a", "/p/b/c"} {
		r, _, _ := p.version(rp)
		r.File = fileSum{}
		if err := p.setVersion(rp, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.commit(); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	if h.full {
		t.Fatal("the check asked for a full replay; want the old records adopted")
	}
	st, err := h.a.check(context.Background())
	if err != nil || st != (checkStats{Files: 2}) {
		t.Fatalf("check after the upgrade = %+v, %v; want 2 files, nothing hashed", st, err)
	}
}

// TestApply_BlockedLeafRetried: a leaf where a local, non-empty directory
// stands is not written and not counted as written; it stays pending
// (reported after the sync) and a later batch writes it once the
// directory is gone; its trigger hears of it then.
func TestApply_BlockedLeafRetried(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{"all": "/p"}))
	if err := os.MkdirAll(filepath.Join(h.local("token"), "mine"), 0o700); err != nil {
		t.Fatal(err)
	}
	h.bookmark(1, true, live("/p/token", 1, "T"), live("/p/other", 2, "O"))
	h.wantTree(map[string]string{"token/": "", "token/mine/": "", "other": "O"})
	if want := []string{"/p/token (local directory in the way)"}; !reflect.DeepEqual(h.a.unconverged, want) {
		t.Fatalf("unconverged = %v, want %v", h.a.unconverged, want)
	}
	if runs := h.runs(); len(runs) != 1 || !reflect.DeepEqual(runs[0].Changes.Added, []string{"/p/other"}) {
		t.Fatalf("trigger runs = %+v, want one adding only /p/other", runs)
	}
	// A heartbeat while the directory stays changes nothing; a restart
	// keeps the leaf pending.
	h.bookmark(1, false)
	h.reopen()
	if h.full {
		t.Fatal("a blocked leaf made the check ask for a full replay; its data is in the state")
	}
	if err := os.RemoveAll(h.local("token")); err != nil {
		t.Fatal(err)
	}
	h.bookmark(1, true)
	h.wantTree(map[string]string{"token": "T", "other": "O"})
	if len(h.a.unconverged) != 0 {
		t.Fatalf("unconverged = %v, want none", h.a.unconverged)
	}
	if runs := h.runs(); len(runs) != 2 || !reflect.DeepEqual(runs[1].Changes.Added, []string{"/p/token"}) {
		t.Fatalf("trigger runs = %+v, want a second one adding /p/token", runs)
	}
	// Deleting it then removes the file like any other.
	h.bookmark(2, false, tomb("/p/token", 3))
	h.wantTree(map[string]string{"other": "O"})
}

// TestApply_BlockedLeafDeletedOrShadowed: a tombstone of a blocked leaf
// forgets it; a child written under another blocked leaf shadows it (the
// local directory is now the mirror's), and its data comes back when the
// child goes.
func TestApply_BlockedLeafDeletedOrShadowed(t *testing.T) {
	h := newHarness(t, "/p")
	for _, d := range []string{"gone/x", "parent/x"} {
		if err := os.MkdirAll(h.local(d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	h.bookmark(1, true, live("/p/gone", 1, "G"), live("/p/parent", 2, "P"))
	h.bookmark(2, false, tomb("/p/gone", 3), live("/p/parent/child", 4, "C"))
	h.wantTree(map[string]string{"gone/": "", "gone/x/": "", "parent/": "", "parent/x/": "", "parent/child": "C"})
	if _, blocked, _ := h.a.st.unconverged(); len(blocked) != 0 {
		t.Fatalf("blocked = %v, want none", blocked)
	}
	if err := os.Remove(h.local("parent/x")); err != nil {
		t.Fatal(err)
	}
	h.bookmark(3, false, tomb("/p/parent/child", 5))
	h.wantTree(map[string]string{"gone/": "", "gone/x/": "", "parent": "P"})
}

// TestOnce_NotConverged: a Once run that synced with a leaf out of place
// fails with ErrNotConverged naming it.
func TestOnce_NotConverged(t *testing.T) {
	w := &Watcher{}
	w.cfg.Follow.Once = true
	err := w.result(&applier{unconverged: []string{"/p/a (local directory in the way)"}})
	if !errors.Is(err, ErrNotConverged) || !strings.Contains(err.Error(), "/p/a (local directory in the way)") {
		t.Fatalf("result = %v, want ErrNotConverged naming /p/a", err)
	}
	if err := w.result(&applier{}); err != nil {
		t.Fatalf("result of a converged run = %v, want nil", err)
	}
}

// BenchmarkCheck measures the start-up check of a mirror of 100k files of
// 1 KiB (100 directories of 1000) that nothing changed: a stat each, no
// hash.
func BenchmarkCheck(b *testing.B) {
	oldFile := syncFile
	b.Cleanup(func() { syncFile = oldFile })
	syncFile = func(*os.File) error { return nil } // setting up only
	const dirs, perDir = 100, 1000
	a, closer := benchApplier(b)
	defer closer()
	data := make([]byte, 1024)
	v := uint64(0)
	for d := range dirs {
		nodes := make([]*repldspb.Node, 0, perDir)
		for f := range perDir {
			v++
			nodes = append(nodes, &repldspb.Node{Path: fmt.Sprintf("/p/d%03d/f%04d", d, f), Version: v, Origin: 1, Data: data})
		}
		if err := a.applyPage(context.Background(), nodes, false); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	for b.Loop() {
		st, err := a.check(ctx)
		if err != nil || st != (checkStats{Files: dirs * perDir}) {
			b.Fatalf("check = %+v, %v; want %d files intact", st, err, dirs*perDir)
		}
	}
}

// TestOpen_RefusesSymlinks: a symlink planted where the state file or a
// snapshot directory goes is refused with a clear error, and what it
// points to is left alone.
func TestOpen_RefusesSymlinks(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, cfg Config, victim string)
		opt   harnessOpt
	}{
		{"state file", func(t *testing.T, cfg Config, victim string) {
			mustSymlink(t, victim, cfg.Dir+StateSuffix)
		}, func(*Config) {}},
		{"state file, dry run", func(t *testing.T, cfg Config, victim string) {
			mustSymlink(t, victim, cfg.Dir+StateSuffix)
		}, func(c *Config) { c.DryRun = true }},
		{"snapshot", func(t *testing.T, cfg Config, victim string) {
			dir := filepath.Join(filepath.Dir(cfg.Dir), "elsewhere")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, "elsewhere", filepath.Join(filepath.Dir(cfg.Dir), ".mirror"+snapInfix+"1"))
		}, atomicMode},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			cfg := DefaultConfig()
			cfg.Dir = filepath.Join(base, "mirror")
			cfg.Follow.Prefix = "/p"
			cfg.Follow.Servers = []string{"unused:1"}
			cfg.Logger = testLogger(t)
			tt.opt(&cfg)
			victim := filepath.Join(base, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			tt.plant(t, cfg, victim)
			w, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, closer, err := w.openLocal(context.Background())
			if err == nil {
				closer()
				t.Fatal("openLocal succeeded, want the symlink refused")
			}
			if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), "is a symlink") {
				t.Fatalf("openLocal error = %v, want ErrSymlink", err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
				t.Fatalf("victim = %q, %v; want it untouched", b, err)
			}
		})
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}
