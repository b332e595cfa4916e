package store_test

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/replds/replds/store"
	"github.com/replds/replds/store/storetest"
)

// TestFeed_Source: a catch-up reads the change index when the consumer
// lacks few changes next to the nodes under its prefixes, and scans when
// it lacks many.
func TestFeed_Source(t *testing.T) {
	cfg := storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch))
	cfg.MaxBatch = 1000
	cfg.MaxBatchBytes = 1 << 20
	s := openStore(t, cfg)
	ctx := context.Background()
	var ws []store.Write
	for i := range 400 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/big/%03d", i), Data: []byte("x")})
	}
	for i := range 10 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/small/%d", i), Data: []byte("x")})
	}
	if _, err := s.Write(ctx, ws); err != nil {
		t.Fatal(err)
	}
	mark := s.Vector()
	for i := range 5 {
		if _, err := s.Write(ctx, []store.Write{{Path: fmt.Sprintf("/big/%03d", i), Data: []byte("y")}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		prefix string
		from   store.Vector
		index  bool
	}{
		{"whole tree, few changes", "/", mark, true},
		{"big subtree, few changes", "/big", mark, true},
		{"small subtree, few changes", "/small", mark, false},
		{"whole tree, from nothing", "/", nil, false},
		{"big subtree, from nothing", "/big", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := s.Feed(store.FeedOptions{Prefixes: []string{tt.prefix}, From: tt.from})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got, err := f.PlanByIndex(); err != nil || got != tt.index {
				t.Errorf("catch-up by index = %v, %v; want %v", got, err, tt.index)
			}
		})
	}
}

// TestFeed_CatchUpInterruptible: a catch-up that finds nothing to deliver
// (every node filtered) still ends when ctx does, and a later call carries
// on to the end, with nothing lost.
func TestFeed_CatchUpInterruptible(t *testing.T) {
	cfg := storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch))
	cfg.MaxBatch = 1000
	s := openStore(t, cfg)
	var ws []store.Write
	for i := range 300 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/p/%03d", i), Data: []byte("x")})
	}
	if _, err := s.Write(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
	f, err := s.Feed(store.FeedOptions{
		Prefixes: []string{"/p"},
		Keep:     func(string, store.Meta) bool { return false },
		MaxNodes: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if page, err := f.Next(cancelled); err != context.Canceled {
		t.Fatalf("Next(cancelled) = %d nodes, caught %v, %v; want context.Canceled", len(page.Nodes), page.Caught, err)
	}
	page, err := f.Next(context.Background())
	if err != nil || !page.Caught || len(page.Nodes) != 0 || !maps.Equal(page.Vector, s.Vector()) {
		t.Fatalf("Next = %d nodes, caught %v, vector %v, %v; want the end of the catch-up at %v", len(page.Nodes), page.Caught, page.Vector, err, s.Vector())
	}
}
