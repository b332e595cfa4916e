package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/replds/replds/store"
)

func TestStore_Written(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, store.DefaultConfig(filepath.Join(t.TempDir(), "db")))
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	ch := s.Written()
	if closed(ch) {
		t.Fatal("Written() closed before any write")
	}
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("Written() not closed after a Write")
	}

	ch = s.Written()
	if closed(ch) {
		t.Error("Written() taken after the write is already closed")
	}
	// Writing what a leaf holds changes nothing; replicated nodes are not
	// this store's own writes.
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	remote := store.Node{Path: "/b", Meta: store.Meta{Version: 1 << 16, Origin: 7, Seq: 1, Size: 1}, Data: []byte("x")}
	if _, err := s.Apply(ctx, []store.Node{remote}, nil); err != nil {
		t.Fatal(err)
	}
	if closed(ch) {
		t.Error("Written() closed by a write that changed nothing, or by Apply")
	}
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("Written() not closed after a delete")
	}
}
