package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/replds/replds/store"
	"github.com/replds/replds/store/storetest"
)

// TestDelta: after a mark, Delta brings exactly the winners written since
// under the prefix (overwrites and deletes included, filtered by Keep), in
// path order, with the vector of the same transaction; Walk sees the whole
// kept prefix; nothing changed means one empty page and no walk.
func TestDelta(t *testing.T) {
	s := openStore(t, storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch)))
	ctx := context.Background()
	write := func(ws ...store.Write) {
		t.Helper()
		if _, err := s.Write(ctx, ws); err != nil {
			t.Fatal(err)
		}
	}
	var ws []store.Write
	for i := range 20 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/p/%02d", i), Data: []byte("v1")})
	}
	write(append(ws, store.Write{Path: "/q/x", Data: []byte("q")}, store.Write{Path: "/p/skip/a", Data: []byte("s")})...)
	mark := s.Vector()

	read := func(prefix string, from store.Vector) (paths, walked []string, vec store.Vector, pages int) {
		t.Helper()
		err := s.Delta(ctx, store.DeltaOptions{
			Prefix:   prefix,
			From:     from,
			Keep:     func(p string, _ store.Meta) bool { return p != "/p/skip/a" && p != "/p/skip/b" },
			Walk:     func(p string, _ store.Meta) { walked = append(walked, p) },
			MaxNodes: 2,
		}, func(v store.Vector, page []store.Node) error {
			vec, pages = v, pages+1
			for _, n := range page {
				paths = append(paths, fmt.Sprintf("%s=%s%v", n.Path, n.Data, n.Deleted))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return paths, walked, vec, pages
	}

	if paths, walked, vec, pages := read("/p", mark); len(paths) != 0 || walked != nil || pages != 1 || vec[s.Origin()] != mark[s.Origin()] {
		t.Fatalf("unchanged: paths %v, walked %d, pages %d, vec %v; want nothing, one page, vec %v", paths, len(walked), pages, vec, mark)
	}

	write(store.Write{Path: "/p/05", Data: []byte("v2")}, store.Write{Path: "/q/x", Data: []byte("q2")})
	write(store.Write{Path: "/p/07", Delete: true}, store.Write{Path: "/p/skip/b", Data: []byte("s")})
	write(store.Write{Path: "/p/05", Data: []byte("v3")}, store.Write{Path: "/p/new", Data: []byte("n")})

	paths, walked, vec, pages := read("/p", mark)
	want := []string{"/p/05=v3false", "/p/07=true", "/p/new=nfalse"}
	if !slices.Equal(paths, want) {
		t.Errorf("delta of /p = %v, want %v", paths, want)
	}
	if pages != 2 {
		t.Errorf("pages = %d, want 2 (MaxNodes 2)", pages)
	}
	if !slices.IsSorted(walked) || len(walked) != 21 || slices.Contains(walked, "/p/skip/a") {
		t.Errorf("walked %d paths (sorted %v), want the 21 kept under /p in order", len(walked), slices.IsSorted(walked))
	}
	if !vec.Covers(s.Origin(), s.Vector()[s.Origin()]) {
		t.Errorf("vector %v does not cover the store's %v", vec, s.Vector())
	}
	if all, _, _, _ := read("/", nil); len(all) != 22 {
		t.Errorf("delta of / from nothing = %d nodes, want 22 (every kept winner)", len(all))
	}
}

// TestSnapshot_Borrow: borrowed data, read inside fn, is the nodes' data;
// Scan ignores Borrow (its page outlives the transaction).
func TestSnapshot_Borrow(t *testing.T) {
	s := openStore(t, storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch)))
	ctx := context.Background()
	var ws []store.Write
	for i := range 50 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/b/%02d", i), Data: []byte(fmt.Sprintf("data %d", i))})
	}
	if _, err := s.Write(ctx, ws); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := s.Snapshot(ctx, store.ScanOptions{Prefix: "/b", MaxNodes: 7, Borrow: true}, func(_ store.Vector, page []store.Node) error {
		for _, n := range page {
			got[n.Path] = string(n.Data) // copied while valid
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if got[w.Path] != string(w.Data) {
			t.Errorf("borrowed %s = %q, want %q", w.Path, got[w.Path], w.Data)
		}
	}
	page, _, err := s.Scan(store.ScanOptions{Prefix: "/b", Borrow: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(page[1].Data) != "data 1" {
		t.Errorf("Scan with Borrow: data %q after the transaction", page[1].Data)
	}
}

// TestDelta_BelowFloor: a Delta from a vector below the collection floor
// fails with ErrCollected (the collected deletes are not in the log any
// more), and one from the store's vector after the collection works.
func TestDelta_BelowFloor(t *testing.T) {
	s := openStore(t, storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch)))
	ctx := context.Background()
	if _, err := s.Write(ctx, []store.Write{{Path: "/d/a", Data: []byte("a")}, {Path: "/d/b", Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	mark := s.Vector()
	if _, err := s.Write(ctx, []store.Write{{Path: "/d/b", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Collect(ctx, ^uint64(0), s.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want the tombstone of /d/b", n, err)
	}
	read := func(from store.Vector) error {
		return s.Delta(ctx, store.DeltaOptions{Prefix: "/d", From: from}, func(store.Vector, []store.Node) error { return nil })
	}
	if err := read(mark); !errors.Is(err, store.ErrCollected) {
		t.Errorf("Delta from before the collected delete = %v, want ErrCollected", err)
	}
	if err := read(s.Vector()); err != nil {
		t.Errorf("Delta from the current vector = %v", err)
	}
}
