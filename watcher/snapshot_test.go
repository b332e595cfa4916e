package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
)

// ino returns the inode number of the mirror's file name.
func (h *harness) ino(name string) uint64 {
	h.t.Helper()
	fi, err := os.Stat(h.local(name))
	if err != nil {
		h.t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func (h *harness) target() string {
	h.t.Helper()
	target, err := os.Readlink(h.cfg.Dir)
	if err != nil {
		h.t.Fatal(err)
	}
	return target
}

func TestAtomic_OneSwapPerBatch(t *testing.T) {
	h := newHarness(t, "/p", atomicMode)
	h.bookmark(1, true, live("/p/a", 1, "A"), live("/p/d/b", 2, "B"))
	h.wantTree(map[string]string{"a": "A", "d/": "", "d/b": "B"})
	h.wantFile("a", "A")
	h.check()
	first := h.target()

	// A batch in two pages: nothing shows before its bookmark.
	h.page(live("/p/d/b", 3, "B2"))
	h.page(tomb("/p/a", 4), live("/p/c", 5, "C"))
	if h.target() != first {
		t.Fatalf("the store directory moved before the bookmark")
	}
	h.wantTree(map[string]string{"a": "A", "d/": "", "d/b": "B"})
	h.check()
	h.bookmark(2, false)
	h.wantTree(map[string]string{"c": "C", "d/": "", "d/b": "B2"})
	h.check()
	if h.target() == first {
		t.Fatal("the store directory still links to the first snapshot")
	}

	// Unchanged files are hard links of the previous snapshot's.
	inoB := h.ino("d/b")
	h.bookmark(3, false, live("/p/c", 6, "C2"))
	h.wantTree(map[string]string{"c": "C2", "d/": "", "d/b": "B2"})
	if got := h.ino("d/b"); got != inoB {
		t.Errorf("unchanged d/b has inode %d, was %d: copied, not linked", got, inoB)
	}

	// A heartbeat, or a batch that changes nothing visible, swaps nothing.
	before := h.target()
	h.bookmark(3, false)
	h.bookmark(4, false, live("/p/c", 5, "stale"))
	h.bookmark(5, false, live("/p/tmp", 7, "T"), tomb("/p/tmp", 8))
	if h.target() != before {
		t.Errorf("a batch with no net change swapped the snapshot")
	}
	h.wantTree(map[string]string{"c": "C2", "d/": "", "d/b": "B2"})
	h.check()
}

// TestAtomic_CrashMidBatch: the staging snapshot of a batch the state
// partly recorded is picked up again after a crash; nothing shows until
// the bookmark.
func TestAtomic_CrashMidBatch(t *testing.T) {
	h := newHarness(t, "/p", atomicMode, withTriggers(t, t.TempDir(), map[string]string{"t": "/p"}))
	h.bookmark(1, true, live("/p/a", 1, "A"))
	h.page(live("/p/b", 2, "B"))
	staging := h.a.m.snaps.next
	h.reopen()
	if h.a.m.snaps.staging == nil || h.a.m.snaps.next != staging {
		t.Fatalf("after a crash mid-batch, staging snapshot %d not resumed", staging)
	}
	h.wantTree(map[string]string{"a": "A"})
	h.check()
	h.bookmark(2, false, live("/p/c", 3, "C"))
	h.wantTree(map[string]string{"a": "A", "b": "B", "c": "C"})
	h.check()
	runs := h.runs()
	if want := []string{"/p/b", "/p/c"}; len(runs) != 2 || !reflect.DeepEqual(runs[1].Changes.Added, want) {
		t.Fatalf("trigger runs = %+v, want a second one adding %v", runs, want)
	}
}

// TestAtomic_CrashBetweenSealAndSwap: the state sealed the batch but the
// process died before the rename: the next start swaps it in, then runs
// the triggers.
func TestAtomic_CrashBetweenSealAndSwap(t *testing.T) {
	h := newHarness(t, "/p", atomicMode, withTriggers(t, t.TempDir(), map[string]string{"t": "/p"}))
	h.bookmark(1, true, live("/p/a", 1, "A"))
	h.page(live("/p/a", 2, "A2"))
	h.seal(2, false)
	h.wantTree(map[string]string{"a": "A"})
	h.reopen()
	h.wantTree(map[string]string{"a": "A2"})
	h.check()
	runs := h.runs()
	if len(runs) != 2 || !reflect.DeepEqual(runs[1].Changes.Changed, []string{"/p/a"}) {
		t.Fatalf("trigger runs = %+v, want a second one for the swapped batch", runs)
	}
}

func TestAtomic_LeftoversRemoved(t *testing.T) {
	h := newHarness(t, "/p", atomicMode)
	h.bookmark(1, true, live("/p/a", 1, "A"))
	h.close()
	parent, base := filepath.Dir(h.cfg.Dir), filepath.Base(h.cfg.Dir)
	for _, name := range []string{"." + base + ".replds-snap-99", "." + base + ".replds-tmp-0123", "." + base + ".replds-tmp-link"} {
		if err := os.Mkdir(filepath.Join(parent, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Not ours: another directory's snapshot, and look-alikes.
	others := []string{".other.replds-snap-1", "." + base + ".replds-snap-01", "." + base + ".replds-snap-2x"}
	for _, name := range others {
		if err := os.Mkdir(filepath.Join(parent, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	h.open()
	h.check()
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(parent, name)); err != nil {
			t.Errorf("%s, not ours, was removed: %v", name, err)
		}
	}
}

// TestAtomic_AdoptsPlainDirectory: a mirror made without --atomic becomes
// the first snapshot, its content kept; and back again, without --atomic
// the current snapshot is written in place.
func TestAtomic_AdoptsPlainDirectory(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 1, "A"), live("/p/d/b", 2, "B"))
	h.close()
	h.cfg.Atomic = true
	h.open()
	h.wantTree(map[string]string{"a": "A", "d/": "", "d/b": "B"})
	h.check()
	// A crash between the adoption's two renames leaves no store
	// directory: the next start links the adopted snapshot.
	h.close()
	if err := os.Remove(h.cfg.Dir); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.wantTree(map[string]string{"a": "A", "d/": "", "d/b": "B"})
	h.check()
	h.bookmark(2, false, live("/p/c", 3, "C"))
	h.wantTree(map[string]string{"a": "A", "c": "C", "d/": "", "d/b": "B"})
	h.check()

	h.close()
	h.cfg.Atomic = false
	h.open()
	h.bookmark(3, false, tomb("/p/a", 4))
	h.wantTree(map[string]string{"c": "C", "d/": "", "d/b": "B"})
}

func TestAtomic_RefusesForeignSymlink(t *testing.T) {
	base := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Follow.Prefix, cfg.Follow.Servers, cfg.Atomic = filepath.Join(base, "mirror"), "/p", []string{"unused:1"}, true
	cfg.Logger = testLogger(t)
	if err := os.Symlink(t.TempDir(), cfg.Dir); err != nil {
		t.Fatal(err)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.openLocal(context.Background()); err == nil {
		t.Fatal("openLocal over a symlink to elsewhere succeeded, want an error")
	}
}

func TestAtomic_DryRunWritesNothing(t *testing.T) {
	h := newHarness(t, "/p", atomicMode)
	h.bookmark(1, true, live("/p/a", 1, "A"))
	h.close()
	before := h.siblings()
	target := h.target()
	h.cfg.DryRun = true
	h.open()
	h.bookmark(2, false, live("/p/a", 2, "A2"), live("/p/b", 2, "B"))
	h.wantTree(map[string]string{"a": "A"})
	if got := h.siblings(); !slices.Equal(got, before) || h.target() != target {
		t.Fatalf("dry run changed the snapshots: %v -> %v", before, got)
	}
}

// owner returns the uid and gid of path (not following a symlink).
func owner(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestApply_Owner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing ownership needs root")
	}
	const uid, gid = 4242, 4343
	for _, atomic := range []bool{false, true} {
		t.Run(fmt.Sprint("atomic=", atomic), func(t *testing.T) {
			h := newHarness(t, "/p", func(c *Config) {
				c.Atomic = atomic
				c.Owner = &Owner{UID: uid, GID: gid}
			})
			h.bookmark(1, true, live("/p/a", 1, "A"), live("/p/d/e/f", 2, "F"))
			h.bookmark(2, false, live("/p/a", 3, "A2"))
			h.wantTree(map[string]string{"a": "A2", "d/": "", "d/e/": "", "d/e/f": "F"})
			paths := []string{h.cfg.Dir, h.local("a"), h.local("d"), h.local("d/e"), h.local("d/e/f")}
			if atomic {
				paths = append(paths, filepath.Join(filepath.Dir(h.cfg.Dir), h.target()))
			}
			for _, p := range paths {
				if u, g := owner(t, p); u != uid || g != gid {
					t.Errorf("%s owned by %d:%d, want %d:%d", p, u, g, uid, gid)
				}
			}
		})
	}

	// Only the group; and a mirror made before the option converges at
	// start.
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/x/y", 1, "Y"))
	h.close()
	h.cfg.Owner = &Owner{UID: -1, GID: gid}
	h.open()
	for _, p := range []string{h.cfg.Dir, h.local("x"), h.local("x/y")} {
		if u, g := owner(t, p); u != 0 || g != gid {
			t.Errorf("%s owned by %d:%d, want 0:%d", p, u, g, gid)
		}
	}
}

// TestAtomic_RetiredSnapshotsKept: a reader that opened the store
// directory before a swap reads the whole tree it resolved after the swap;
// the snapshot it holds is removed only after the next swap and once the
// grace period passed.
func TestAtomic_RetiredSnapshotsKept(t *testing.T) {
	now := time.Unix(1000, 0)
	h := newHarness(t, "/p", atomicMode, func(c *Config) { c.AtomicGrace = time.Minute })
	h.a.m.snaps.now = func() time.Time { return now }
	h.bookmark(1, true, live("/p/cert", 1, "1"), live("/p/key", 1, "1"))
	reader, err := os.OpenRoot(h.cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	first := h.target()
	read := func() string {
		t.Helper()
		cert, err1 := reader.ReadFile("cert")
		key, err2 := reader.ReadFile("key")
		if err1 != nil || err2 != nil {
			t.Fatalf("reader of %s: %v, %v", first, err1, err2)
		}
		return string(cert) + string(key)
	}
	for i := uint64(2); i <= 4; i++ {
		v := fmt.Sprint(i)
		h.bookmark(i, false, live("/p/cert", i, v), live("/p/key", i, v))
		h.check()
		if got := read(); got != "11" {
			t.Fatalf("after swap %d the reader reads %q, want its batch, 11", i, got)
		}
	}
	// A reconnect (a new session asks for the token) keeps them too.
	if _, err := h.a.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "11" {
		t.Fatalf("after a reconnect the reader reads %q, want its batch, 11", got)
	}
	if got := len(h.a.m.snaps.retired); got != 4 {
		t.Fatalf("%d retired snapshots within the grace period, want 4 (the first, empty one too)", got)
	}
	// Past the grace period, the next swap keeps only the snapshot it
	// replaces.
	now = now.Add(2 * time.Minute)
	h.bookmark(5, false, live("/p/cert", 5, "5"))
	h.check()
	if _, err := os.Lstat(filepath.Join(filepath.Dir(h.cfg.Dir), first)); !os.IsNotExist(err) {
		t.Fatalf("first snapshot after the grace period: %v, want it removed", err)
	}
	if got := len(h.a.m.snaps.retired); got != 1 {
		t.Fatalf("%d retired snapshots past the grace period, want 1", got)
	}
	// A restart keeps the last retired one.
	h.reopen()
	h.check()
	if got := len(h.a.m.snaps.retired); got != 1 {
		t.Fatalf("%d retired snapshots after a restart, want 1", got)
	}
}

// TestAtomic_CopyStopsWhenRunEnds: the copy of the current snapshot for a
// new batch stops when the pull is told to stop, and leaves nothing
// behind; the next batch makes it whole.
func TestAtomic_CopyStopsWhenRunEnds(t *testing.T) {
	h := newHarness(t, "/p", atomicMode)
	h.bookmark(1, true, manyNodes(50, 5)...)
	before := h.siblings()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.a.m.ctx = ctx
	err := h.a.Apply(context.Background(), pageOf([]*repldspb.Node{live("/p/new", 100, "N")}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply while stopping = %v, want context.Canceled", err)
	}
	if got := h.siblings(); !slices.Equal(got, before) {
		t.Fatalf("beside the store directory after a stopped copy: %v, want %v", got, before)
	}
	h.a.m.ctx = context.Background()
	h.bookmark(2, false, live("/p/new", 100, "N"))
	h.wantFile("new", "N")
}

// TestAtomic_RetiredFilesBounded: within the grace period, retired
// snapshots are kept only up to maxRetiredFiles files (the last one
// aside), the oldest going first.
func TestAtomic_RetiredFilesBounded(t *testing.T) {
	old := maxRetiredFiles
	t.Cleanup(func() { maxRetiredFiles = old })
	maxRetiredFiles = 10
	h := newHarness(t, "/p", atomicMode, func(c *Config) { c.AtomicGrace = time.Hour })
	h.bookmark(1, true, manyNodes(5, 1)...)
	for i := uint64(2); i <= 6; i++ {
		h.bookmark(i, false, live("/p/d0/f00000", 100+i, fmt.Sprint(i)))
		h.check()
	}
	var got []uint64
	for _, r := range h.a.m.snaps.retired {
		got = append(got, r.n)
	}
	// The first batch went into snapshot 2, and 3 to 7 were copies of 5
	// files each: 6 (the last retired) is kept whatever it holds, 5 and 4
	// fit in 10 files, 3 and older go.
	if want := []uint64{4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("retired snapshots = %v, want %v", got, want)
	}
}
