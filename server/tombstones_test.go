package server_test

import (
	"context"
	"math"
	"testing"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
)

// TestWatch_TokenBelowCollectionFloor: a client whose resume token is
// below the collection floor may hold a node whose delete was collected:
// its Watch starts with a reset and replays the prefix in full, so that it
// drops the node. A token at the floor resumes without one.
func TestWatch_TokenBelowCollectionFloor(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	cl := c.Client(0)
	ctx := context.Background()
	put(t, cl, "/t/gone", "1", "/t/kept", "2")
	next := watch(t, cl, "/t", nil)
	untilSynced(next)
	var old *repldspb.Vector
	for old == nil {
		old = next().Bookmark
	}
	if _, err := cl.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/t/gone", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	db := c.Server(0).DB()
	if n, _, err := db.Collect(ctx, math.MaxUint64, db.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want 1", n, err)
	}

	next = watch(t, cl, "/t", old)
	first := next()
	if !first.Reset_ {
		t.Fatalf("Watch from a token below the floor began with %v, want a reset", first)
	}
	got := append(paths(first), untilSynced(next)...)
	if len(got) != 1 || got[0] != "/t/kept" {
		t.Errorf("replay after the reset = %v, want [/t/kept]", got)
	}

	var cur *repldspb.Vector
	for cur == nil {
		cur = next().Bookmark
	}
	next = watch(t, cl, "/t", cur)
	if msg := next(); msg.Reset_ {
		t.Errorf("Watch from a token at the floor began with a reset")
	}
}
