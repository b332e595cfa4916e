package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/triggers"
)

func names(runs []triggerRun) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Name)
	}
	return out
}

func TestTriggers_OncePerBatchInNameOrder(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{
		"b-sub":   "/p/sub",
		"a-all":   "/p",
		"c-other": "/other",
		"d-subx":  "/p/subx", // segment-bounded: /p/sub/... is not under it
	}))
	// 50 changes over two pages and a bookmark: one batch.
	var want []string
	for i := range 50 {
		p := fmt.Sprintf("/p/sub/f%02d", i)
		want = append(want, p)
		if i == 25 {
			h.page()
		}
		h.page(live(p, uint64(i+1), "x"))
	}
	if got := h.runs(); len(got) != 0 {
		t.Fatalf("triggers ran before the bookmark: %v", names(got))
	}
	h.bookmark(50, true)
	runs := h.runs()
	if got := names(runs); !reflect.DeepEqual(got, []string{"a-all", "b-sub"}) {
		t.Fatalf("runs = %v, want [a-all b-sub]", got)
	}
	for _, r := range runs {
		if !reflect.DeepEqual(r.Changes.Added, want) || len(r.Changes.Changed)+len(r.Changes.Deleted) != 0 {
			t.Fatalf("%s got %+v, want the 50 paths added", r.Name, r.Changes)
		}
	}
	// A bookmark alone changes nothing: no run.
	h.bookmark(51, false)
	// A batch outside /p/sub runs only a-all.
	h.bookmark(52, false, live("/p/top", 60, "t"), tomb("/p/sub/f00", 61), live("/p/sub/f01", 62, "y"))
	runs = h.runs()
	if got := names(runs); !reflect.DeepEqual(got, []string{"a-all", "b-sub", "a-all", "b-sub"}) {
		t.Fatalf("runs = %v", got)
	}
	wantAll := triggers.Changes{Added: []string{"/p/top"}, Changed: []string{"/p/sub/f01"}, Deleted: []string{"/p/sub/f00"}}
	if got := runs[2].Changes; !reflect.DeepEqual(got, wantAll) {
		t.Fatalf("a-all got %+v, want %+v", got, wantAll)
	}
	// Changes that cancel out within a batch (added, then deleted) are no
	// change at all.
	h.bookmark(53, false, live("/p/sub/tmp", 70, "t"), tomb("/p/sub/tmp", 71))
	if got := len(h.runs()); got != 4 {
		t.Fatalf("a batch with no net change ran triggers (%d runs)", got)
	}
}

func TestTriggers_FailureRetriedWithNextBatch(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "ok")
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{
		"flaky": "/p|test -e " + flag + " && {record}",
	}))
	h.bookmark(1, true, live("/p/x", 1, "x"))
	if got := h.runs(); len(got) != 0 {
		t.Fatalf("runs = %v, want the failing trigger not logged", names(got))
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The next batch hands over the failed batch's changes too.
	h.bookmark(2, false, live("/p/y", 2, "y"))
	runs := h.runs()
	if len(runs) != 1 || !reflect.DeepEqual(runs[0].Changes.Added, []string{"/p/x", "/p/y"}) {
		t.Fatalf("runs = %+v, want one run with /p/x and /p/y added", runs)
	}
}

// TestTriggers_CrashBeforeBookmarkRunsOnce: files of a batch are written
// and recorded, then the process dies before the bookmark. The restarted
// watcher gets the batch again (same token), skips what is on disk, and
// runs the trigger exactly once with all of the batch.
func TestTriggers_CrashBeforeBookmarkRunsOnce(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{"t": "/p"}))
	h.bookmark(1, true, live("/p/old", 1, "o"))
	h.page(live("/p/a", 2, "A"), tomb("/p/old", 3))
	h.page(live("/p/b", 4, "B"))
	h.wantTree(map[string]string{"a": "A", "b": "B"})
	h.reopen() // crash: no bookmark
	if got := len(h.runs()); got != 1 {
		t.Fatalf("runs after restart = %d, want 1 (the first batch only)", got)
	}
	// Replay from the old token: everything is already applied.
	h.page(live("/p/a", 2, "A"), tomb("/p/old", 3), live("/p/b", 4, "B"))
	h.bookmark(4, false, live("/p/c", 5, "C"))
	runs := h.runs()
	want := triggers.Changes{Added: []string{"/p/a", "/p/b", "/p/c"}, Changed: []string{}, Deleted: []string{"/p/old"}}
	if len(runs) != 2 || !reflect.DeepEqual(runs[1].Changes, want) {
		t.Fatalf("runs = %+v, want a second run with %+v", runs, want)
	}
	h.reopen()
	h.bookmark(5, false)
	if got := len(h.runs()); got != 2 {
		t.Fatalf("runs = %d after another restart, want still 2", got)
	}
}

// TestTriggers_CrashAfterBookmarkRunsAtStart: the token was persisted but
// the process died before the trigger ran: it runs at the next start, once.
func TestTriggers_CrashAfterBookmarkRunsAtStart(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{"t": "/p"}))
	h.page(live("/p/a", 1, "A"))
	h.seal(1, true) // the bookmark, without its triggers
	h.reopen()
	runs := h.runs()
	if len(runs) != 1 || !reflect.DeepEqual(runs[0].Changes.Added, []string{"/p/a"}) {
		t.Fatalf("runs after restart = %+v, want one with /p/a", runs)
	}
	h.reopen()
	h.bookmark(2, false)
	if got := len(h.runs()); got != 1 {
		t.Fatalf("runs = %d, want still 1", got)
	}
}

// TestTriggers_WaitingRunsAtStart: the quiescence schedule lives in
// memory, so what a trigger with a window left pending runs as soon as the
// next run's first session begins, and a later session leaves the window
// alone.
func TestTriggers_WaitingRunsAtStart(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{
		"w": `{"path": "/p", "command": "{record}", "wait": {"min": "1h"}}`,
	}))
	h.bookmark(1, true, live("/p/a", 1, "A"))
	if got := len(h.runs()); got != 0 {
		t.Fatalf("ran within the window: %d runs", got)
	}
	h.reopen()
	if got := len(h.runs()); got != 1 {
		t.Fatalf("runs after restart = %d, want 1: the pending trigger runs at the first session", got)
	}
	h.bookmark(2, false, live("/p/b", 2, "B"))
	if _, err := h.a.Token(context.Background()); err != nil { // a second session
		t.Fatal(err)
	}
	if got := len(h.runs()); got != 1 {
		t.Fatalf("runs after a second session = %d, want still 1: its window is running", got)
	}
}

func TestTriggers_RemovedTriggerForgetsPending(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, "/p", withTriggers(t, dir, map[string]string{"gone": "/p|exit 1"}))
	h.bookmark(1, true, live("/p/a", 1, "A"))
	if c, _ := h.a.st.pending("gone"); c.Len() != 1 {
		t.Fatalf("pending of the failed trigger = %+v, want /p/a", c)
	}
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := h.cfg.Triggers.(*triggers.Runner).Reload(); err != nil {
		t.Fatal(err)
	}
	h.bookmark(2, false, live("/p/b", 2, "B"))
	if c, _ := h.a.st.pending("gone"); c.Len() != 0 {
		t.Fatalf("pending of a removed trigger = %+v, want none", c)
	}
}

func TestTriggers_WaitWindow(t *testing.T) {
	h := newHarness(t, "/p", withTriggers(t, t.TempDir(), map[string]string{
		"w": `{"path": "/p", "command": "{record}", "wait": {"min": "1s", "max": "3s"}}`,
	}))
	now := time.Unix(1000, 0) // a fake clock for the window
	h.a.now = func() time.Time { return now }

	h.bookmark(1, false, live("/p/a", 1, "A"))
	if got := len(h.runs()); got != 0 {
		t.Fatalf("ran before the window: %d runs", got)
	}
	due, ok := h.a.nextDue()
	if !ok || !due.Equal(now.Add(time.Second)) {
		t.Fatalf("nextDue = %v %v, want %v", due, ok, now.Add(time.Second))
	}
	// Changes keep coming every 0.9s: each postpones the run, up to max.
	for i := range 3 {
		now = now.Add(900 * time.Millisecond)
		if _, err := h.a.runTriggers(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		h.bookmark(uint64(i+2), false, live(fmt.Sprintf("/p/b%d", i), uint64(i+2), "B"))
	}
	if got := len(h.runs()); got != 0 {
		t.Fatalf("ran within the window: %d runs", got)
	}
	due, _ = h.a.nextDue()
	if want := time.Unix(1003, 0); !due.Equal(want) {
		t.Fatalf("nextDue = %v, want capped at first change + max = %v", due, want)
	}
	now = due
	if _, err := h.a.runTriggers(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	runs := h.runs()
	if len(runs) != 1 || len(runs[0].Changes.Added) != 4 {
		t.Fatalf("runs = %+v, want one with 4 paths", runs)
	}
	if _, ok := h.a.nextDue(); ok {
		t.Fatal("still scheduled after the run")
	}
}

// TestBookmark_HeartbeatWritesNothing: a bookmark that changes nothing and
// repeats the persisted token commits no state transaction (no fsync per
// heartbeat); one with a new token does.
func TestBookmark_HeartbeatWritesNothing(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 1, "A"))
	txid := func() (id int) {
		h.a.st.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	h.bookmark(1, false)
	if got := txid(); got != before {
		t.Errorf("heartbeat committed %d transactions, want none", got-before)
	}
	h.bookmark(2, false)
	if got := txid(); got == before {
		t.Error("a new token committed nothing, want it persisted")
	}
}
