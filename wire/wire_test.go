package wire_test

import (
	"maps"
	"testing"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

func TestVector_RoundTrip(t *testing.T) {
	v := store.Vector{3: 30, 1: 10, 2: 20}
	pv := wire.VectorToProto(v)
	for i, e := range pv.Entries {
		if want := uint64(i + 1); e.Origin != want {
			t.Errorf("VectorToProto entry %d origin = %d, want %d (ascending)", i, e.Origin, want)
		}
	}
	if got := wire.VectorFromProto(pv); !maps.Equal(got, v) {
		t.Errorf("VectorFromProto(VectorToProto(%v)) = %v", v, got)
	}
	if got := wire.VectorFromProto(nil); got == nil || len(got) != 0 {
		t.Errorf("VectorFromProto(nil) = %#v, want an empty vector", got)
	}
	dup := &repldspb.Vector{Entries: []*repldspb.VectorEntry{{Origin: 1, Seq: 5}, {Origin: 1, Seq: 3}}}
	if got := wire.VectorFromProto(dup); got[1] != 5 {
		t.Errorf("VectorFromProto(origin 1 at 5 and 3) = %v, want 1:5", got)
	}
}

func TestNode_RoundTrip(t *testing.T) {
	n := store.Node{Path: "/a", Meta: store.Meta{Version: 7, Origin: 2, Seq: 3, Size: 2}, Data: []byte("hi")}
	if got := wire.NodeFromProto(wire.NodeToProto(n)); got.Path != n.Path || got.Meta != n.Meta || string(got.Data) != "hi" {
		t.Errorf("NodeFromProto(NodeToProto(%+v)) = %+v", n, got)
	}
	if got := wire.NodesToProto([]store.Node{n, n}); len(got) != 2 || got[1].Path != "/a" {
		t.Errorf("NodesToProto = %v", got)
	}
}
