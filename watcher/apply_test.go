package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

func TestApply_PagesWriteFilesWithModes(t *testing.T) {
	h := newHarness(t, "/p")
	h.page(live("/p/a", 1, "A"), live("/p/d/e/f", 2, "F"))
	h.page(live("/p/d/g", 3, "G"), live("/p/empty", 4, ""))
	h.bookmark(4, true)
	h.wantTree(map[string]string{"a": "A", "d/": "", "d/e/": "", "d/e/f": "F", "d/g": "G", "empty": ""})
	h.wantFile("a", "A")
	if fi, err := os.Stat(h.cfg.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	// The state sits next to the mirror, not inside.
	if _, err := os.Stat(h.cfg.Dir + StateSuffix); err != nil {
		t.Fatalf("state file: %v", err)
	}
}

func TestApply_ModesDespiteUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	h := newHarness(t, "/p", func(c *Config) { c.FileMode, c.DirMode = 0o644, 0o755 })
	h.bookmark(1, true, live("/p/x/y", 1, "Y"))
	h.wantTree(map[string]string{"x/": "", "x/y": "Y"}) // checks dir modes
	h.wantFile("x/y", "Y")
}

func TestApply_VersionsNeverGoBack(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 10, "v10"))
	h.bookmark(2, false, live("/p/a", 9, "v9"))
	h.wantFile("a", "v10")
	// Same version: the higher origin wins, the lower is ignored.
	n := live("/p/a", 10, "origin 2")
	n.Origin = 2
	h.bookmark(3, false, n)
	h.wantFile("a", "origin 2")
	h.bookmark(4, false, live("/p/a", 10, "origin 1 again"))
	h.wantFile("a", "origin 2")
	// A tombstone wins over older writes arriving later (failover to a
	// server that is behind).
	h.bookmark(5, false, tomb("/p/a", 11))
	h.wantGone("a")
	h.bookmark(6, false, live("/p/a", 10, "stale"))
	h.wantGone("a")
	h.bookmark(7, false, live("/p/a", 12, "v12"))
	h.wantFile("a", "v12")
}

func TestApply_TombstonesPruneEmptyDirs(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a/b/c", 1, "C"), live("/p/a/d", 2, "D"), live("/p/top", 3, "T"))
	h.bookmark(2, false, tomb("/p/a/b/c", 4))
	h.wantTree(map[string]string{"a/": "", "a/d": "D", "top": "T"})
	h.bookmark(3, false, tomb("/p/a/d", 5), tomb("/p/top", 6), tomb("/p/never", 7))
	h.wantTree(map[string]string{})
	if _, err := os.Stat(h.cfg.Dir); err != nil {
		t.Fatalf("the store directory itself was pruned: %v", err)
	}
}

func TestApply_RefusesBadPaths(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true,
		live("/p/../etc/passwd", 1, "x"),
		live("/p/a/./b", 1, "x"),
		live("/p//b", 1, "x"),
		live("p/rel", 1, "x"),
		live("/p/", 1, "x"),
		live("/p/ctl\n", 1, "x"),
		live(`/p/back\slash`, 1, "x"),
		live("/q/x", 1, "outside"),
		live("/px", 1, "segment-bounded"),
		live("/", 1, "root"),
		live("/p"+strings.Repeat("/d", nodepath.MaxDepth), 1, "too deep"),
		live("/p/ok", 1, "ok"),
	)
	h.wantTree(map[string]string{"ok": "ok"})
	var n int
	h.a.st.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketNodes).Stats().KeyN; return nil })
	if n != 1 {
		t.Fatalf("state holds %d nodes, want only /p/ok", n)
	}
}

// TestApply_SymlinksAreNeverFollowed, in both modes: in atomic mode the
// links are planted in the current snapshot and left out of the next one.
func TestApply_SymlinksAreNeverFollowed(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		t.Run(fmt.Sprint("atomic=", atomic), func(t *testing.T) {
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, "/p", func(c *Config) { c.Atomic = atomic })
			// Someone plants symlinks inside the mirror, pointing outside.
			for name, target := range map[string]string{"dir": outside, "file": victim, "gone": victim} {
				if err := os.Symlink(target, h.local(name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Mkdir(h.local("sub"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../dir", h.local("sub/rel")); err != nil {
				t.Fatal(err)
			}
			h.bookmark(1, true,
				live("/p/dir/victim", 1, "through a dir link"),
				live("/p/file", 1, "over a file link"),
				live("/p/sub/rel/x", 1, "through a relative link"),
			)
			h.page(live("/p/gone", 2, "G"))
			os.Remove(h.local("gone"))
			if err := os.Symlink(victim, h.local("gone")); err != nil {
				t.Fatal(err)
			}
			h.bookmark(2, false, tomb("/p/gone", 3))

			if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
				t.Fatalf("file outside the mirror = %q, %v; want it untouched", b, err)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 1 {
				t.Fatalf("outside dir has %d entries, want only the victim", len(entries))
			}
			want := map[string]string{
				"dir/": "", "dir/victim": "through a dir link",
				"file": "over a file link",
				"sub/": "", "sub/rel/": "", "sub/rel/x": "through a relative link",
			}
			if atomic {
				// The second link went into the current snapshot, which
				// the watcher never writes; the batch (gone added and
				// deleted) changed nothing, so no new snapshot replaced it.
				want["gone"] = "-> " + victim
			}
			h.wantTree(want)
		})
	}
}

func TestApply_SingleLeafPrefix(t *testing.T) {
	h := newHarness(t, "/certs/web.pem")
	h.bookmark(1, true, live("/certs/web.pem", 1, "PEM"), live("/certs/web.pem.key", 1, "not under"))
	h.wantTree(map[string]string{"web.pem": "PEM"})
	h.bookmark(2, false, tomb("/certs/web.pem", 2))
	h.wantTree(map[string]string{})
}

func TestApply_DirectoryWinsOverLeaf(t *testing.T) {
	h := newHarness(t, "/p")
	// Leaf first, then a node under it: the leaf is shadowed.
	h.bookmark(1, true, live("/p/a", 1, "leaf a"))
	h.bookmark(2, false, live("/p/a/b", 2, "B"))
	h.wantTree(map[string]string{"a/": "", "a/b": "B"})
	// The shadowed leaf keeps being updated in the state only.
	h.bookmark(3, false, live("/p/a", 3, "leaf a v3"))
	h.wantTree(map[string]string{"a/": "", "a/b": "B"})
	// The directory empties: the leaf comes back with its latest data.
	h.bookmark(4, false, tomb("/p/a/b", 4))
	h.wantTree(map[string]string{"a": "leaf a v3"})

	// Children first, then the leaf: shadowed at once; both in one page.
	h.bookmark(5, false, live("/p/c/d/e", 5, "E"), live("/p/c", 5, "leaf c"))
	h.wantTree(map[string]string{"a": "leaf a v3", "c/": "", "c/d/": "", "c/d/e": "E"})
	// Deleting a shadowed leaf changes nothing on disk.
	h.bookmark(6, false, tomb("/p/c", 6))
	h.bookmark(7, false, tomb("/p/c/d/e", 7))
	h.wantTree(map[string]string{"a": "leaf a v3"})

	// The shadow survives a restart.
	h.bookmark(8, false, live("/p/a/x", 8, "X"))
	h.reopen()
	h.bookmark(9, false, tomb("/p/a/x", 9))
	h.wantTree(map[string]string{"a": "leaf a v3"})
}

func TestApply_ResetDeletesWhatIsGone(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(5, true, live("/p/keep", 1, "K"), live("/p/gone/x", 2, "X"), live("/p/old", 3, "O"))
	h.bookmark(6, false, tomb("/p/old", 4))
	h.wantTree(map[string]string{"keep": "K", "gone/": "", "gone/x": "X"})

	// The server cannot resume our token: it resets and replays all.
	h.send(&repldspb.WatchResponse{Reset_: true})
	h.page(live("/p/keep", 1, "K"))
	// A restart in the middle of the resync: it must still complete.
	h.reopen()
	if !h.full {
		t.Fatal("after a restart mid-reset, the next session is not a full resync")
	}
	h.page(live("/p/keep", 1, "K"), live("/p/new", 7, "N"))
	h.wantTree(map[string]string{"keep": "K", "gone/": "", "gone/x": "X", "new": "N"})
	h.bookmark(10, true)
	h.wantTree(map[string]string{"keep": "K", "new": "N"})
	if h.full {
		t.Fatal("still in full resync after the synced bookmark")
	}
}

func TestApply_StateSurvivesReopen(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(3, true, live("/p/a", 5, "A"))
	h.reopen()
	token, full, err := h.a.st.token()
	if err != nil || full || !proto.Equal(token, vec(3)) {
		t.Fatalf("token after reopen = %v, full %v, err %v; want %v", token, full, err, vec(3))
	}
	if h.full {
		t.Fatal("a resumable state starts a full resync")
	}
	h.bookmark(4, false, live("/p/a", 4, "older"))
	h.wantFile("a", "A")
	// Another prefix or directory is refused rather than mixed up.
	h.close()
	for _, mod := range []func(*Config){
		func(c *Config) { c.Follow.Prefix = "/other" },
		func(c *Config) { c.Dir += "2"; c.StateFile = h.cfg.Dir + StateSuffix },
	} {
		cfg := h.cfg
		mod(&cfg)
		w, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.openLocal(context.Background()); err == nil || !strings.Contains(err.Error(), "state file is for") {
			t.Fatalf("openLocal with a foreign state = %v, want a refusal", err)
		}
	}
	h.open()
}

func TestApply_LeftoverTempFilesRemoved(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/d/"+tmpPrefix+"real", 1, "a leaf with an odd name"))
	h.close()
	if err := os.WriteFile(h.local("d/"+tmpPrefix+"0123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.wantTree(map[string]string{"d/": "", "d/" + tmpPrefix + "real": "a leaf with an odd name"})
}

func TestApply_DryRunWritesNothing(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 1, "A"), live("/p/b", 1, "B"))
	h.close()
	stateBefore, err := os.ReadFile(h.cfg.stateFile())
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.DryRun = true
	h.open()
	h.bookmark(2, false, live("/p/a", 2, "A2"), tomb("/p/b", 2), live("/p/c/d", 2, "D"))
	h.wantTree(map[string]string{"a": "A", "b": "B"})
	h.close()
	stateAfter, _ := os.ReadFile(h.cfg.stateFile())
	if string(stateBefore) != string(stateAfter) {
		t.Fatal("dry run changed the state file")
	}
	h.cfg.DryRun = false
	h.open()
}

// TestApply_TombstoneRemovesFileStateDoesNotKnow covers a crash between a
// page's files being renamed into place and its state commit: if the node
// is deleted on the servers before the page comes again, only its
// tombstone comes, and it must still remove the file.
func TestApply_TombstoneRemovesFileStateDoesNotKnow(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []harnessOpt
	}{{"plain", nil}, {"atomic", []harnessOpt{atomicMode}}} {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, "/p", mode.opts...)
			h.bookmark(1, true, live("/p/x", 1, "X"))
			// What the crash left: the file on disk, the state unaware.
			if err := os.WriteFile(h.local("a"), []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			h.reopen()
			h.bookmark(2, false, tomb("/p/a", 3))
			if b, err := os.ReadFile(h.local("a")); !os.IsNotExist(err) {
				t.Errorf("after the tombstone of /p/a the mirror still holds a = %q (%v)", b, err)
			}
			if b, err := os.ReadFile(h.local("x")); err != nil || string(b) != "X" {
				t.Errorf("x = %q (%v), want X untouched", b, err)
			}
		})
	}
}
