package watcher

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/replds/replds/boltcompact"
	repldspb "github.com/replds/replds/proto"
)

// stateHas reports whether the harness's state file contains s.
func (h *harness) stateHas(s string) bool {
	h.t.Helper()
	raw, err := os.ReadFile(h.cfg.stateFile())
	if err != nil {
		h.t.Fatalf("read state: %v", err)
	}
	return bytes.Contains(raw, []byte(s))
}

// TestState_ShadowedDataErased: once a shadowed leaf is deleted,
// overwritten or restored, its old data leaves the state file at the
// bookmark that ends the batch.
func TestState_ShadowedDataErased(t *testing.T) {
	const canary = "CANARY-5be0c2d4-shadowed-secret"
	for _, tc := range []struct {
		name string
		end  func(h *harness)
		want map[string]string
	}{
		{"deleted", func(h *harness) {
			h.bookmark(3, false, tomb("/p/a", 3))
		}, map[string]string{"a/": "", "a/b": "B"}},
		{"overwritten", func(h *harness) {
			h.bookmark(3, false, live("/p/a", 3, "new"))
		}, map[string]string{"a/": "", "a/b": "B"}},
		{"restored", func(h *harness) {
			h.bookmark(3, false, tomb("/p/a/b", 3))
		}, map[string]string{"a": canary}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "/p")
			// Enough other shadowed data that the shadow bucket has pages
			// of its own, which bbolt does not rewrite at every commit.
			var others []*repldspb.Node
			for i := range 8 {
				p := fmt.Sprintf("/p/z%d", i)
				others = append(others, live(p+"/x", 1, "X"), live(p, 1, strings.Repeat("z", 1500)))
			}
			h.bookmark(1, true, append(others, live("/p/a", 1, canary))...)
			h.bookmark(2, false, live("/p/a/b", 2, "B"))
			if !h.stateHas(canary) {
				t.Fatalf("shadowed data not in the state file")
			}
			tc.end(h)
			want := maps.Clone(tc.want)
			for i := range 8 {
				want[fmt.Sprintf("z%d/", i)] = ""
				want[fmt.Sprintf("z%d/x", i)] = "X"
			}
			h.wantTree(want)
			if h.stateHas(canary) {
				t.Errorf("shadowed data still in the state file after the bookmark")
			}
			// The compacted state works on, and after a restart.
			h.bookmark(4, false, live("/p/c", 4, "C"))
			h.reopen()
			h.bookmark(5, false)
			want["c"] = "C"
			h.wantTree(want)
		})
	}
}

// TestState_BlockedDataErased: once a leaf kept out by a local directory
// is deleted or finally written, its data leaves the state file at the
// bookmark.
func TestState_BlockedDataErased(t *testing.T) {
	const canary = "CANARY-3d1f8e27-blocked-secret"
	// Big enough for overflow pages of its own, which the rewrites of
	// the other blocked leaves at each bookmark do not reuse.
	big := strings.Repeat(canary, 400)
	for _, tc := range []struct {
		name string
		end  func(h *harness)
		want map[string]string
	}{
		{"deleted", func(h *harness) {
			h.bookmark(2, false, tomb("/p/a", 2))
		}, map[string]string{"a/": "", "a/mine/": ""}},
		{"written", func(h *harness) {
			if err := os.RemoveAll(h.local("a")); err != nil {
				h.t.Fatal(err)
			}
			h.bookmark(2, false)
		}, map[string]string{"a": big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "/p")
			// Other blocked leaves, so that the blocked bucket has pages of
			// its own.
			var nodes []*repldspb.Node
			want := maps.Clone(tc.want)
			for i := range 8 {
				name := fmt.Sprintf("z%d", i)
				if err := os.MkdirAll(h.local(name+"/mine"), 0o700); err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, live("/p/"+name, 1, strings.Repeat("z", 1500)))
				want[name+"/"], want[name+"/mine/"] = "", ""
			}
			if err := os.MkdirAll(h.local("a/mine"), 0o700); err != nil {
				t.Fatal(err)
			}
			h.bookmark(1, true, append(nodes, live("/p/a", 1, big))...)
			if !h.stateHas(canary) {
				t.Fatalf("blocked data not in the state file")
			}
			tc.end(h)
			h.wantTree(want)
			if h.stateHas(canary) {
				t.Errorf("blocked data still in the state file after the bookmark")
			}
		})
	}
}

// TestState_CompactLeftoverRemoved: an unfinished compaction copy of the
// state (a crash during the swap) is removed when the state opens.
func TestState_CompactLeftoverRemoved(t *testing.T) {
	h := newHarness(t, "/p")
	h.bookmark(1, true, live("/p/a", 1, "A"))
	h.close()
	tmp := boltcompact.TempPath(h.cfg.stateFile())
	if err := os.WriteFile(tmp, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.open()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover copy not removed: stat = %v", err)
	}
	h.bookmark(2, false)
	h.wantTree(map[string]string{"a": "A"})
}
