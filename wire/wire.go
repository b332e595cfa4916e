package wire

import (
	"maps"
	"slices"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

// NodeToProto converts a store node to its wire form. The message shares
// n.Data: neither must be modified while the other is in use.
func NodeToProto(n store.Node) *repldspb.Node {
	return &repldspb.Node{
		Path:    n.Path,
		Version: n.Version,
		Origin:  n.Origin,
		Seq:     n.Seq,
		Deleted: n.Deleted,
		Data:    n.Data,
	}
}

// NodesToProto converts store nodes with NodeToProto.
func NodesToProto(ns []store.Node) []*repldspb.Node {
	out := make([]*repldspb.Node, len(ns))
	for i, n := range ns {
		out[i] = NodeToProto(n)
	}
	return out
}

// NodeFromProto converts a wire node, sharing its data, with Size set from
// the data. It checks nothing: callers validate what they received before
// they store it (store.Apply checks paths, origins and seqs).
func NodeFromProto(p *repldspb.Node) store.Node {
	return store.Node{
		Path: p.Path,
		Meta: store.Meta{
			Version: p.Version,
			Origin:  p.Origin,
			Seq:     p.Seq,
			Deleted: p.Deleted,
			Size:    uint32(len(p.Data)),
		},
		Data: p.Data,
	}
}

// VectorToProto converts a version vector, entries in ascending origin
// order (so equal vectors encode to equal bytes).
func VectorToProto(v store.Vector) *repldspb.Vector {
	pv := &repldspb.Vector{Entries: make([]*repldspb.VectorEntry, 0, len(v))}
	for _, o := range slices.Sorted(maps.Keys(v)) {
		pv.Entries = append(pv.Entries, &repldspb.VectorEntry{Origin: o, Seq: v[o]})
	}
	return pv
}

// VectorFromProto converts a wire vector; nil gives an empty vector. An
// origin listed twice keeps its highest seq.
func VectorFromProto(pv *repldspb.Vector) store.Vector {
	v := store.Vector{}
	pv.MergeInto(v)
	return v
}
