package store_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/replds/replds/store"
	"github.com/replds/replds/store/storetest"
)

// version returns the HLC version of wall clock t.
func version(t time.Time) uint64 { return uint64(t.UnixMilli()) << 16 }

// checkConsistent fails t if s's memory and file disagree.
func checkConsistent(t *testing.T, s *store.Store) {
	t.Helper()
	if err := s.CheckConsistency(); err != nil {
		t.Fatalf("CheckConsistency() = %v", err)
	}
}

// TestStore_Collect: Collect removes exactly the tombstones older than its
// bound whose write the covered vector covers, node and log entry, raises
// the floor, and all of it survives a reopen.
func TestStore_Collect(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	dir := t.TempDir()
	s := openStore(t, storetest.Config(t, dir, clock))
	put := func(ws ...store.Write) []store.Node {
		t.Helper()
		nodes, err := s.Write(ctx, ws)
		if err != nil {
			t.Fatalf("Write = %v", err)
		}
		return nodes
	}
	put(store.Write{Path: "/a", Data: []byte("1")}, store.Write{Path: "/b", Data: []byte("2")}, store.Write{Path: "/c", Data: []byte("3")})
	clock.Add(time.Second)
	delA := put(store.Write{Path: "/a", Delete: true})[0]
	delB := put(store.Write{Path: "/b", Delete: true})[0]
	clock.Add(time.Second)
	before := version(clock.Now())
	own := s.Origin()

	// Nothing is older than a bound below both tombstones.
	if n, _, err := s.Collect(ctx, delA.Version, store.Vector{own: delB.Seq}); err != nil || n != 0 {
		t.Fatalf("Collect(below both) = %d, %v; want 0", n, err)
	}
	// /b's write is not covered: only /a goes.
	n, more, err := s.Collect(ctx, before, store.Vector{own: delA.Seq})
	if err != nil || n != 1 || more {
		t.Fatalf("Collect = %d, %v, %v; want 1, false, nil", n, more, err)
	}
	check := func() {
		t.Helper()
		if m, ok := s.Lookup("/a"); ok {
			t.Errorf("Lookup(/a) = %+v after collection, want absent", m)
		}
		if m, ok := s.Lookup("/b"); !ok || !m.Deleted {
			t.Errorf("Lookup(/b) = %+v, %v; want its tombstone", m, ok)
		}
		if got := s.Stats(); got.Nodes != 1 || got.Tombstones != 1 {
			t.Errorf("Stats() = %+v, want 1 node and 1 tombstone", got)
		}
		f := s.Floor()
		if !maps.Equal(f.Vector, store.Vector{own: delA.Seq}) || f.Version != delA.Version {
			t.Errorf("Floor() = %+v, want vector {%x: %d} version %d", f, own, delA.Seq, delA.Version)
		}
		changes, _, _, err := s.Changes(own, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			if c.Path == "/a" {
				t.Errorf("Changes still has /a: %+v", c)
			}
		}
		checkConsistent(t, s)
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, storetest.Config(t, dir, clock))
	check()

	// The freed path comes back as a fresh write.
	put(store.Write{Path: "/a", Data: []byte("again")})
	if got, err := s.Get("/a"); err != nil || string(got.Data) != "again" {
		t.Errorf("Get(/a) = %q, %v; want again", got.Data, err)
	}
	checkConsistent(t, s)
}

// TestStore_ApplyAfterCollectNoResurrection: a live node older than a
// collected tombstone, arriving at a path the store no longer holds (a
// peer restored from an old backup sends it), is taken for deleted: the
// store stamps a tombstone of its own just above it, which replicates. A
// newer node at such a path is a normal write.
func TestStore_ApplyAfterCollectNoResurrection(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	const remote = 77
	v1 := version(clock.Now())
	old := store.Node{Path: "/p", Meta: store.Meta{Version: v1, Origin: remote, Seq: 1}, Data: []byte("secret")}
	tomb := store.Node{Path: "/p", Meta: store.Meta{Version: v1 + 10, Origin: remote, Seq: 2, Deleted: true}}
	if _, err := s.Apply(ctx, []store.Node{old, tomb}, nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if n, _, err := s.Collect(ctx, version(clock.Now()), s.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want 1", n, err)
	}
	ownBefore := s.Vector()[s.Origin()]
	wake := s.Written()

	if _, err := s.Apply(ctx, []store.Node{old}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("/p"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(/p) = %q, %v after the old node came back; want not found", got.Data, err)
	}
	m, ok := s.Lookup("/p")
	if !ok || !m.Deleted || m.Version != v1+1 || m.Origin != s.Origin() || m.Seq != ownBefore+1 {
		t.Errorf("Lookup(/p) = %+v, %v; want a tombstone of ours, version %d, seq %d", m, ok, v1+1, ownBefore+1)
	}
	if got := s.Buried(); got != 1 {
		t.Errorf("Buried() = %d, want 1", got)
	}
	select {
	case <-wake:
	default:
		t.Errorf("Written not fired for the stamped tombstone: the pushers would not send it")
	}
	checkConsistent(t, s)

	// A write newer than the floor is no resurrection.
	fresh := store.Node{Path: "/q", Meta: store.Meta{Version: version(clock.Now()), Origin: remote, Seq: 3}, Data: []byte("new")}
	if _, err := s.Apply(ctx, []store.Node{fresh}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("/q"); err != nil || string(got.Data) != "new" {
		t.Errorf("Get(/q) = %q, %v; want new", got.Data, err)
	}
}

// TestStore_Bury: Bury tombstones the candidates still current and at
// most the floor, and leaves the others.
func TestStore_Bury(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	nodes, err := s.Write(ctx, []store.Write{{Path: "/old", Data: []byte("x")}, {Path: "/moved", Data: []byte("y")}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	if _, err := s.Write(ctx, []store.Write{{Path: "/moved", Data: []byte("z")}}); err != nil {
		t.Fatal(err)
	}
	newer, err := s.Write(ctx, []store.Write{{Path: "/new", Data: []byte("n")}})
	if err != nil {
		t.Fatal(err)
	}
	floor := nodes[1].Version
	n, err := s.Bury(ctx, append(nodes, newer...), floor)
	if err != nil || n != 1 {
		t.Fatalf("Bury = %d, %v; want 1 (only /old)", n, err)
	}
	if _, err := s.Get("/old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(/old) = %v, want not found", err)
	}
	for _, p := range []string{"/moved", "/new"} {
		if _, err := s.Get(p); err != nil {
			t.Errorf("Get(%s) = %v, want it kept", p, err)
		}
	}
	checkConsistent(t, s)
}

// TestFeed_BelowFloor: a feed from a vector below the collection floor
// fails with ErrCollected instead of silently missing the collected
// deletes; from the floor or from nothing it replays.
func TestFeed_BelowFloor(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	held := s.Vector() // a consumer holding the live /a
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if n, _, err := s.Collect(ctx, version(clock.Now()), s.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want 1", n, err)
	}
	for _, tc := range []struct {
		name string
		from store.Vector
		want error
	}{
		{"below", held, store.ErrCollected},
		{"at", s.Vector(), nil},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := s.Feed(store.FeedOptions{From: tc.from})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, _, err = f.TryNext()
			if !errors.Is(err, tc.want) {
				t.Errorf("TryNext() from %v = %v, want %v", tc.from, err, tc.want)
			}
		})
	}
}

// TestStore_OwnTombstoneComesBack: one of our own tombstones that we
// collected and a peer still keeps comes back by Apply (the hash trees
// must agree until the peer collects it too); one of our own live nodes
// at such a path does not.
func TestStore_OwnTombstoneComesBack(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	written, err := s.Write(ctx, []store.Write{{Path: "/x", Data: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := s.Write(ctx, []store.Write{{Path: "/x", Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if n, _, err := s.Collect(ctx, version(clock.Now()), s.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want 1", n, err)
	}
	root := s.Root()
	live := store.Node{Path: "/x", Meta: written[0].Meta, Data: []byte("1")}
	if _, err := s.Apply(ctx, []store.Node{live}, nil); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Lookup("/x"); ok {
		t.Fatalf("our own collected live node came back: %+v", m)
	}
	if s.Root() != root {
		t.Fatalf("hash tree changed by our own echoed node")
	}
	if _, err := s.Apply(ctx, []store.Node{{Path: "/x", Meta: deleted[0].Meta}}, nil); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Lookup("/x"); !ok || m != deleted[0].Meta {
		t.Errorf("Lookup(/x) = %+v, %v; want our tombstone %+v back", m, ok, deleted[0].Meta)
	}

	// An older tombstone of another origin came back first (a peer
	// restored from a backup): ours, newer, still wins.
	if _, err := s.Write(ctx, []store.Write{{Path: "/y", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	deleted, err = s.Write(ctx, []store.Write{{Path: "/y", Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if n, _, err := s.Collect(ctx, version(clock.Now()), s.Vector()); err != nil || n != 2 {
		t.Fatalf("Collect = %d, %v; want 2 (/y's tombstone, and /x's again)", n, err)
	}
	older := store.Node{Path: "/y", Meta: store.Meta{Version: deleted[0].Version - 5, Origin: 77, Seq: 1, Deleted: true}}
	if _, err := s.Apply(ctx, []store.Node{older, {Path: "/y", Meta: deleted[0].Meta}}, nil); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Lookup("/y"); !ok || m != deleted[0].Meta {
		t.Errorf("Lookup(/y) = %+v, %v; want our tombstone %+v over the older one", m, ok, deleted[0].Meta)
	}
	checkConsistent(t, s)
}

// TestFeed_FloorRaisedUnderLiveFeed: a peer's collection floor raised here
// (RaiseFloor, before a sync advance passes deletes this store never got)
// ends a live feed whose consumer is below it with ErrCollected, at the
// next commit; a consumer at or above it goes on.
func TestFeed_FloorRaisedUnderLiveFeed(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	const peer = 42
	open := func(from store.Vector) *store.Feed {
		f, err := s.Feed(store.FeedOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		if p, err := f.Next(ctx); err != nil || !p.Caught {
			t.Fatalf("catch-up = %+v, %v", p, err)
		}
		return f
	}
	below := open(s.Vector())
	above := open(store.Vector{s.Origin(): s.Vector()[s.Origin()], peer: 10})
	if err := s.RaiseFloor(ctx, store.Floor{Vector: store.Vector{peer: 7}, Version: 99}); err != nil {
		t.Fatal(err)
	}
	if f := s.Floor(); f.Vector[peer] != 7 || f.Version != 99 {
		t.Fatalf("Floor() = %+v after RaiseFloor", f)
	}
	if _, err := s.Write(ctx, []store.Write{{Path: "/b", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := below.Next(ctx); !errors.Is(err, store.ErrCollected) {
		t.Errorf("live feed below the raised floor: Next() = %v, want ErrCollected", err)
	}
	if p, err := above.Next(ctx); err != nil || len(p.Nodes) != 1 {
		t.Errorf("live feed above the floor: Next() = %+v, %v; want /b", p, err)
	}
	checkConsistent(t, s)
}
