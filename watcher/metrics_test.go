package watcher

import (
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	repldspb "github.com/replds/replds/proto"
)

// fakeWatch is a Watch stream that receives msgs, then io.EOF.
type fakeWatch struct {
	grpc.ClientStream
	msgs []*repldspb.WatchResponse
}

func (f *fakeWatch) RecvMsg(msg any) error {
	if len(f.msgs) == 0 {
		return io.EOF
	}
	proto.Reset(msg.(proto.Message))
	proto.Merge(msg.(proto.Message), f.msgs[0])
	f.msgs = f.msgs[1:]
	return nil
}

// exportedLag returns replds_pull_lag_changes as the registry serves it.
func exportedLag(t *testing.T, m *Metrics) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "replds_pull_lag_changes" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("replds_pull_lag_changes is not exported")
	return 0
}

func vector(seqs map[uint64]uint64) *repldspb.Vector {
	v := &repldspb.Vector{}
	for o, s := range seqs {
		v.Entries = append(v.Entries, &repldspb.VectorEntry{Origin: o, Seq: s})
	}
	return v
}

// TestMetrics_Lag: the lag is what the latest bookmark received covers
// beyond what was applied, summed over origins; 0 once it is applied, and
// back to all of it after a reset.
func TestMetrics_Lag(t *testing.T) {
	m := NewMetrics()
	recv := func(resp *repldspb.WatchResponse) {
		t.Helper()
		w := &watchObserver{ClientStream: &fakeWatch{msgs: []*repldspb.WatchResponse{resp}}, m: m}
		if err := w.RecvMsg(&repldspb.WatchResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		what string
		do   func()
		want float64
	}{
		{"at start", func() {}, 0},
		{"bookmark {1:10, 2:5} received", func() { recv(&repldspb.WatchResponse{Bookmark: vector(map[uint64]uint64{1: 10, 2: 5})}) }, 15},
		{"{1:7} applied", func() { m.bookmarkApplied(vector(map[uint64]uint64{1: 7}), 3) }, 8},
		{"nodes without a bookmark", func() { recv(&repldspb.WatchResponse{Nodes: []*repldspb.Node{{Path: "/x"}}}) }, 8},
		{"{1:10, 2:5} applied", func() { m.bookmarkApplied(vector(map[uint64]uint64{1: 10, 2: 5}), 2) }, 0},
		{"older bookmark {1:9} received", func() { recv(&repldspb.WatchResponse{Bookmark: vector(map[uint64]uint64{1: 9})}) }, 0},
		{"bookmark {1:12, 3:1} received", func() { recv(&repldspb.WatchResponse{Bookmark: vector(map[uint64]uint64{1: 12, 3: 1})}) }, 3},
		{"reset", func() { recv(&repldspb.WatchResponse{Reset_: true}) }, 18},
		{"{1:12, 2:5, 3:1} applied", func() { m.bookmarkApplied(vector(map[uint64]uint64{1: 12, 2: 5, 3: 1}), 0) }, 0},
	}
	for _, s := range steps {
		s.do()
		if got := exportedLag(t, m); got != s.want {
			t.Errorf("%s: replds_pull_lag_changes = %v, want %v", s.what, got, s.want)
		}
	}
}
