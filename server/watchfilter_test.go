package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
)

// TestWatch_ExcludeOrigins: a Watch that lists origins gets no node of
// them, replayed or live, and still its bookmarks; ClusterOrigins names
// every member's origin.
func TestWatch_ExcludeOrigins(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	c.Store(0, servertest.Put("/p/zero", "0"))
	c.Store(1, servertest.Put("/p/one", "1"))
	c.WaitConverged(10 * time.Second)
	o0, o1 := c.Server(0).DB().Origin(), c.Server(1).DB().Origin()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := c.Server(0).ClusterOrigins(ctx)
	if want := []uint64{min(o0, o1), max(o0, o1)}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("ClusterOrigins = %x, %v; want %x", got, err, want)
	}

	stream, err := c.Client(0).Watch(ctx, &repldspb.WatchRequest{Prefix: "/p", ExcludeOrigins: []uint64{o1}})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	recvUntil := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv waiting for %s: %v (got %v)", what, err, paths)
			}
			for _, n := range msg.Nodes {
				if n.Origin == o1 {
					t.Errorf("Watch sent %s of the excluded origin %x", n.Path, o1)
				}
				paths = append(paths, n.Path)
			}
			if msg.Bookmark != nil && msg.Synced {
				paths = append(paths, "synced")
			}
		}
	}
	recvUntil("the replay", func() bool { return slices.Contains(paths, "synced") })
	c.Store(1, servertest.Put("/p/one-live", "1"))
	c.Store(0, servertest.Put("/p/zero-live", "0"))
	recvUntil("the live write of server 0", func() bool { return slices.Contains(paths, "/p/zero-live") })
	if want := []string{"/p/zero", "synced", "/p/zero-live"}; !slices.Equal(paths, want) {
		t.Errorf("received %v, want %v", paths, want)
	}
}
