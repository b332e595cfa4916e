package watcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/follow"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/triggers"
)

// testLogger sends logs to the test's output (shown on failure).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// harness drives the local side of a watcher (mirror, state, triggers)
// with messages as a server would send them, without a network.
type harness struct {
	t      *testing.T
	cfg    Config
	w      *Watcher
	a      *applier
	full   bool
	closer func() error
	// logFile receives one line per trigger run: "name <stdin JSON>".
	logFile string
}

// harnessOpt adjusts the config before the harness opens.
type harnessOpt func(*Config)

func newHarness(t *testing.T, prefix string, opts ...harnessOpt) *harness {
	t.Helper()
	base := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(base, "mirror")
	cfg.Follow.Prefix = prefix
	cfg.Follow.Servers = []string{"unused:1"}
	cfg.Logger = testLogger(t)
	for _, o := range opts {
		o(&cfg)
	}
	h := &harness{t: t, cfg: cfg, logFile: filepath.Join(base, "triggers.log")}
	h.open()
	t.Cleanup(func() {
		if h.closer != nil {
			h.check()
			h.close()
		}
	})
	return h
}

// withTriggers writes trigger files into dir and loads them. Each spec is
// "path" (the command appends "name <stdin JSON>" to the harness log),
// "path|cmd" (cmd, where {record} stands for that default command), or a
// whole JSON file when it starts with "{".
func withTriggers(t *testing.T, dir string, specs map[string]string) harnessOpt {
	return func(cfg *Config) {
		logFile := filepath.Join(filepath.Dir(cfg.Dir), "triggers.log")
		for name, spec := range specs {
			record := fmt.Sprintf(`{ printf '%%s ' %s; cat; echo; } >> '%s'`, name, logFile)
			b := []byte(strings.ReplaceAll(spec, "{record}", record))
			if !strings.HasPrefix(spec, "{") {
				path, cmd, ok := strings.Cut(spec, "|")
				if !ok {
					cmd = "{record}"
				}
				b, _ = json.Marshal(map[string]any{"path": path, "command": strings.ReplaceAll(cmd, "{record}", record), "timeout": "10s"})
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r, err := triggers.New(triggers.Config{Dir: dir, Store: cfg.Dir, Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Triggers = r
	}
}

func (h *harness) open() {
	h.t.Helper()
	w, err := New(h.cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	a, closer, err := w.openLocal(context.Background())
	if err != nil {
		h.t.Fatalf("openLocal: %v", err)
	}
	h.w, h.a, h.closer = w, a, closer
	// As Run does: a session, whose Token runs the pending triggers.
	_, full, err := follow.Start(context.Background(), a)
	if err != nil {
		h.t.Fatal(err)
	}
	h.full = full
}

// close closes everything; mid-batch it is a crash as far as the state
// is concerned (all that was committed is durable, nothing else is).
func (h *harness) close() {
	h.t.Helper()
	if err := h.closer(); err != nil {
		h.t.Fatalf("close: %v", err)
	}
	h.closer = nil
}

func (h *harness) reopen() {
	h.t.Helper()
	h.close()
	h.open()
}

// send hands one message to the watcher as if received from a server.
func (h *harness) send(msg *repldspb.WatchResponse) {
	h.t.Helper()
	if _, err := follow.Handle(context.Background(), h.a, msg, &h.full); err != nil {
		h.t.Fatalf("handle: %v", err)
	}
}

func (h *harness) page(nodes ...*repldspb.Node) {
	h.t.Helper()
	h.send(&repldspb.WatchResponse{Nodes: nodes})
}

// bookmark ends a batch (with optional last nodes) with a token {1: seq}.
func (h *harness) bookmark(seq uint64, synced bool, nodes ...*repldspb.Node) {
	h.t.Helper()
	h.send(&repldspb.WatchResponse{Nodes: nodes, Bookmark: vec(seq), Synced: synced})
}

// seal seals the open batch in the state with the token {1: seq}, as a
// bookmark does, and nothing more (no snapshot swap, no trigger run): a
// crash right after the state commit.
func (h *harness) seal(seq uint64, endFull bool) {
	h.t.Helper()
	token, err := proto.Marshal(vec(seq))
	if err != nil {
		h.t.Fatal(err)
	}
	var snap uint64
	if s := h.a.m.snaps; s != nil && s.staging != nil {
		snap = s.next
	}
	if _, _, err := h.a.st.seal(token, endFull, snap, h.a.trig.List()); err != nil {
		h.t.Fatalf("seal: %v", err)
	}
}

func vec(seq uint64) *repldspb.Vector {
	return &repldspb.Vector{Entries: []*repldspb.VectorEntry{{Origin: 1, Seq: seq}}}
}

func live(path string, version uint64, data string) *repldspb.Node {
	return &repldspb.Node{Path: path, Version: version, Origin: 1, Seq: version, Data: []byte(data)}
}

func tomb(path string, version uint64) *repldspb.Node {
	return &repldspb.Node{Path: path, Version: version, Origin: 1, Seq: version, Deleted: true}
}

func (h *harness) local(name string) string {
	return filepath.Join(h.cfg.Dir, filepath.FromSlash(name))
}

// wantFile checks a mirrored file's content and mode.
func (h *harness) wantFile(name, content string) {
	h.t.Helper()
	fi, err := os.Lstat(h.local(name))
	if err != nil {
		h.t.Fatalf("file %s: %v", name, err)
	}
	if !fi.Mode().IsRegular() {
		h.t.Fatalf("file %s is a %v, want a regular file", name, fi.Mode().Type())
	}
	if fi.Mode().Perm() != h.cfg.FileMode {
		h.t.Errorf("file %s mode = %v, want %v", name, fi.Mode().Perm(), h.cfg.FileMode)
	}
	got, err := os.ReadFile(h.local(name))
	if err != nil {
		h.t.Fatal(err)
	}
	if string(got) != content {
		h.t.Fatalf("file %s = %q, want %q", name, got, content)
	}
}

func (h *harness) wantGone(name string) {
	h.t.Helper()
	if _, err := os.Lstat(h.local(name)); !os.IsNotExist(err) {
		h.t.Fatalf("Lstat(%s) = %v, want it gone", name, err)
	}
}

// tree lists the mirror: relative name -> content ("/" suffix for dirs).
func (h *harness) tree() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	// In atomic mode the store directory is a symlink: walk its target.
	dir, err := filepath.EvalSymlinks(h.cfg.Dir)
	if err != nil {
		h.t.Fatal(err)
	}
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		switch {
		case fi.IsDir():
			out[rel+"/"] = ""
			if fi.Mode().Perm() != h.cfg.DirMode {
				h.t.Errorf("dir %s mode = %v, want %v", rel, fi.Mode().Perm(), h.cfg.DirMode)
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) wantTree(want map[string]string) {
	h.t.Helper()
	if got := h.tree(); !reflect.DeepEqual(got, want) {
		h.t.Fatalf("mirror =\n%v\nwant\n%v", got, want)
	}
}

// runs returns the trigger runs logged so far, in order.
func (h *harness) runs() []triggerRun {
	h.t.Helper()
	b, err := os.ReadFile(h.logFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	var out []triggerRun
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, js, _ := strings.Cut(line, " ")
		r := triggerRun{Name: name}
		if err := json.Unmarshal([]byte(js), &r.Changes); err != nil {
			h.t.Fatalf("trigger log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

type triggerRun struct {
	Name    string
	Changes triggers.Changes
}

// check verifies invariants of the state: every live, unshadowed leaf is a
// file in the mirror; every shadowed leaf is live and has live nodes under
// it; no temporary file is left over.
func (h *harness) check() {
	h.t.Helper()
	err := h.a.st.db.View(func(tx *bolt.Tx) error {
		shadow, blocked := tx.Bucket(bucketShadow), tx.Bucket(bucketBlocked)
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNodeRec(v)
			if err != nil {
				return err
			}
			p := string(k)
			if r.Deleted {
				if shadow.Get(k) != nil {
					h.t.Errorf("state: tombstone %s is also shadowed", p)
				}
				return nil
			}
			if shadow.Get(k) != nil || blocked.Get(k) != nil {
				return nil
			}
			if h.cfg.DryRun {
				return nil
			}
			// In atomic mode, during a batch, the state is ahead of the
			// visible snapshot: look at the staging one.
			fi, err := h.a.m.root.Lstat(h.a.localName(p))
			if err != nil || !fi.Mode().IsRegular() {
				h.t.Errorf("state: live leaf %s has no regular file (%v)", p, err)
			}
			return nil
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	for name := range h.tree() {
		if strings.Contains(name, tmpPrefix) && !h.a.tracked(filepath.ToSlash(name)) {
			h.t.Errorf("temporary file left over: %s", name)
		}
	}
	if h.cfg.Atomic && !h.cfg.DryRun {
		h.checkSnapshots()
	}
}

// checkSnapshots verifies the atomic layout: the store directory links to
// a snapshot beside it, and the only other entries of ours are the
// retired snapshots (lower-numbered) and the staging snapshot of an open
// batch.
func (h *harness) checkSnapshots() {
	h.t.Helper()
	snaps := h.a.m.snaps
	target, err := os.Readlink(h.cfg.Dir)
	if err != nil {
		h.t.Fatalf("store directory: %v, want a symlink", err)
	}
	if want := snaps.snapName(snaps.cur); target != want {
		h.t.Errorf("store directory links to %s, want %s", target, want)
	}
	var ours []string
	for _, name := range h.siblings() {
		n, snap := snaps.parseSnap(name)
		if snap && n < snaps.cur && slices.ContainsFunc(snaps.retired, func(r retiredSnap) bool { return r.n == n }) {
			continue
		}
		if (snap || snaps.isTemp(name)) && name != target {
			ours = append(ours, name)
		}
	}
	switch {
	case snaps.staging == nil && len(ours) > 0:
		h.t.Errorf("between batches, entries beside the current snapshot: %v", ours)
	case snaps.staging != nil && (len(ours) != 1 || ours[0] != snaps.snapName(snaps.next)):
		h.t.Errorf("during a batch, entries beside the current snapshot: %v, want only %s", ours, snaps.snapName(snaps.next))
	}
}

// siblings lists the snapshot and temporary entries beside the store
// directory.
func (h *harness) siblings() []string {
	h.t.Helper()
	entries, err := os.ReadDir(filepath.Dir(h.cfg.Dir))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+filepath.Base(h.cfg.Dir)+".replds-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// atomicMode is a harnessOpt for atomic mode.
func atomicMode(c *Config) { c.Atomic = true }
