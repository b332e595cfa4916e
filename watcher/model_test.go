package watcher

import (
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"testing"

	repldspb "github.com/replds/replds/proto"
)

// TestApply_RandomOpsMatchModel applies seeded random sequences of writes
// and tombstones (with clashing leaf/directory paths, stale versions,
// restarts and full resyncs) and checks after each batch that the mirror
// is exactly what the last-write-wins map implies: every live leaf with no
// live node under it is a file with its data, nothing else exists but
// their parent directories.
//
// In atomic mode (fewer seeds: each batch copies the tree) the same holds
// of the published snapshot, and the layout beside it is checked too.
func TestApply_RandomOpsMatchModel(t *testing.T) {
	t.Parallel() // I/O bound, as are its subtests and the e2e tests
	paths := []string{"/p/a", "/p/a/b", "/p/a/b/c", "/p/a/d", "/p/e", "/p/e/f", "/p/g"}
	type run struct {
		name   string
		seed   uint64
		atomic bool
	}
	var runs []run
	for seed := range uint64(10) {
		runs = append(runs, run{fmt.Sprint(seed), seed, false})
	}
	for seed := range uint64(2) {
		runs = append(runs, run{fmt.Sprint("atomic/", seed), seed, true})
	}
	for _, r := range runs {
		seed := r.seed
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			opts := []harnessOpt{withTriggers(t, t.TempDir(), map[string]string{"all": "/p"})}
			if r.atomic {
				opts = append(opts, atomicMode)
			}
			h := newHarness(t, "/p", opts...)
			// The files as the trigger knows them, from the changes it got.
			known := map[string]bool{}
			consumed := 0
			type entry struct {
				rec  nodeRec
				data string
			}
			model := map[string]entry{}
			var seq uint64
			node := func(p string, e entry) *repldspb.Node {
				return &repldspb.Node{Path: p, Version: e.rec.Version, Origin: e.rec.Origin, Deleted: e.rec.Deleted, Data: []byte(e.data)}
			}
			var sent []*repldspb.Node
			for step := uint64(1); step <= 60; step++ {
				var msgs []*repldspb.Node
				for range 1 + rng.IntN(4) {
					if len(sent) > 0 && rng.IntN(4) == 0 {
						// A stale node again (a server behind, a replay):
						// what was applied already never goes back.
						msgs = append(msgs, sent[rng.IntN(len(sent))])
						continue
					}
					p := paths[rng.IntN(len(paths))]
					e := entry{rec: nodeRec{Version: step*100 + rng.Uint64N(3), Origin: 1 + rng.Uint64N(2), Deleted: rng.IntN(3) == 0}}
					if !e.rec.Deleted {
						e.data = fmt.Sprintf("%s@%d.%d", p, e.rec.Version, e.rec.Origin)
					}
					msgs = append(msgs, node(p, e))
					if old, ok := model[p]; !ok || e.rec.newer(old.rec) {
						model[p] = e
					}
				}
				sent = append(sent, msgs...)
				seq++
				switch rng.IntN(10) {
				case 0:
					h.page(msgs...)
					h.reopen() // crash before the bookmark
					h.bookmark(seq, false)
				default:
					h.bookmark(seq, false, msgs...)
				}
				// Now and then the server cannot resume us (its tombstones
				// were collected): it resets and replays its live nodes.
				if rng.IntN(10) == 0 {
					for p, e := range model {
						if !e.rec.Deleted && rng.IntN(3) == 0 {
							model[p] = entry{rec: nodeRec{Version: step*100 + 99, Origin: 1, Deleted: true}}
						}
					}
					h.send(&repldspb.WatchResponse{Reset_: true})
					var replay []*repldspb.Node
					for p, e := range model {
						if !e.rec.Deleted {
							replay = append(replay, node(p, e))
						}
					}
					seq++
					if len(replay) > 1 && rng.IntN(2) == 0 {
						h.page(replay[:1]...)
						// A crash in the middle of the resync: the next
						// session replays everything again.
						h.reopen()
					}
					h.bookmark(seq, true, replay...)
				}
				want := map[string]string{}
				for p, e := range model {
					if e.rec.Deleted {
						continue
					}
					shadowed := false
					for q, f := range model {
						if !f.rec.Deleted && strings.HasPrefix(q, p+"/") {
							shadowed = true
						}
					}
					if shadowed {
						continue
					}
					name := strings.TrimPrefix(p, "/p/")
					want[name] = e.data
					for d := path.Dir(name); d != "."; d = path.Dir(d) {
						want[d+"/"] = ""
					}
				}
				h.wantTree(want)
				h.check()

				runs := h.runs()
				for _, r := range runs[consumed:] {
					for _, p := range r.Changes.Added {
						if known[p] {
							t.Fatalf("step %d: %s added twice", step, p)
						}
						known[p] = true
					}
					for _, p := range r.Changes.Changed {
						if !known[p] {
							t.Fatalf("step %d: %s changed, never added", step, p)
						}
					}
					for _, p := range r.Changes.Deleted {
						if !known[p] {
							t.Fatalf("step %d: %s deleted, never added", step, p)
						}
						delete(known, p)
					}
				}
				consumed = len(runs)
				for name, content := range want {
					if !strings.HasSuffix(name, "/") && !known["/p/"+name] {
						t.Fatalf("step %d: file %s (%q) never reported to the trigger", step, name, content)
					}
				}
				for p := range known {
					if _, ok := want[strings.TrimPrefix(p, "/p/")]; !ok {
						t.Fatalf("step %d: trigger believes %s exists; mirror is %v", step, p, want)
					}
				}
			}
		})
	}
}
