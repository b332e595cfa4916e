package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replds/replds/follow"
	repldspb "github.com/replds/replds/proto"
)

// countdownCtx is a context that ends after n calls of Err: a stop at a
// precise point of a page.
type countdownCtx struct {
	context.Context
	n int
}

func (c *countdownCtx) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func manyNodes(n int, dirs int) []*repldspb.Node {
	nodes := make([]*repldspb.Node, n)
	for i := range nodes {
		nodes[i] = live(fmt.Sprintf("/p/d%d/f%05d", i%dirs, i), uint64(i+1), fmt.Sprint(i))
	}
	return nodes
}

// TestApply_PageCheckpoints: a page larger than checkpointNodes is made
// durable and committed in parts, so that it never holds more temporary
// files than that; stopped in the middle, it leaves the parts committed
// before, consistent (every recorded leaf on disk), and no temporary file;
// received again, it completes.
func TestApply_PageCheckpoints(t *testing.T) {
	old := checkpointNodes
	t.Cleanup(func() { checkpointNodes = old })
	checkpointNodes = 10
	h := newHarness(t, "/p")
	nodes := manyNodes(100, 3)

	err := h.a.Apply(&countdownCtx{Context: context.Background(), n: 25}, pageOf(nodes))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply stopped midway = %v, want context.Canceled", err)
	}
	h.check() // every recorded leaf on disk, no temporary file
	var recorded int
	for _, n := range nodes {
		if p, _ := h.a.st.begin(); p != nil {
			if _, ok, _ := p.version(n.Path); ok {
				recorded++
			}
			p.rollback()
		}
	}
	if recorded != 20 {
		t.Errorf("%d nodes recorded after a stop at the 25th, want the 2 checkpoints of 10", recorded)
	}
	if len(h.a.m.pending) > 0 {
		t.Errorf("%d files pending after the stop", len(h.a.m.pending))
	}

	c := countSyncs(t)
	h.bookmark(1, true, nodes...)
	want := map[string]string{"d0/": "", "d1/": "", "d2/": ""}
	for i, n := range nodes {
		want[strings.TrimPrefix(n.Path, "/p/")] = fmt.Sprint(i)
	}
	h.wantTree(want)
	if got := len(c.files); got != 80 {
		// 80 files left, in parts of 10: an fsync each.
		t.Errorf("%d file fsyncs for the rest of the page, want 80", got)
	}
}

func pageOf(nodes []*repldspb.Node) follow.Page {
	return follow.Page{Nodes: nodes}
}

// TestApply_DeepPathsLinear: directories are walked once per segment,
// through the directory opened at the previous one: a path at the maximum
// depth is written, and a symlink at any depth is replaced, not followed.
func TestApply_DeepPathsLinear(t *testing.T) {
	h := newHarness(t, "/p")
	deep := "/p" + strings.Repeat("/d", 62) + "/leaf"
	h.bookmark(1, true, live(deep, 1, "deep"))
	name := strings.TrimPrefix(deep, "/p/")
	h.wantFile(name, "deep")
	outside := t.TempDir()
	mid := filepath.Join(h.cfg.Dir, strings.Repeat("d/", 30)+"d")
	if err := os.RemoveAll(mid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, mid); err != nil {
		t.Fatal(err)
	}
	h.bookmark(2, false, live(deep, 2, "deeper"))
	h.wantFile(name, "deeper")
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written through a symlink: %v", entries)
	}
}

// BenchmarkApply_Page applies one page of n new files, as a replay does:
// the time per node stays flat as the page grows (checkpoints keep what a
// page holds bounded). The filesystem sync is left out.
func BenchmarkApply_Page(b *testing.B) {
	oldFile := syncFile
	b.Cleanup(func() { syncFile = oldFile })
	syncFile = func(*os.File) error { return nil }
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n, " nodes"), func(b *testing.B) {
			nodes := manyNodes(n, 100)
			for b.Loop() {
				b.StopTimer()
				a, closer := benchApplier(b)
				b.StartTimer()
				if err := a.applyPage(context.Background(), nodes, true); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				closer()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/node")
		})
	}
}

// benchApplier opens the local side of a watcher of "/p" in a new
// directory, logging nothing.
func benchApplier(b *testing.B) (*applier, func() error) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(b.TempDir(), "mirror")
	cfg.Follow.Prefix = "/p"
	cfg.Follow.Servers = []string{"unused:1"}
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	a, closer, err := w.openLocal(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return a, closer
}
