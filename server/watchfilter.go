package server

import (
	"context"
	"fmt"
	"slices"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

// excludeOrigins returns the set of a Watch request's excluded origins,
// nil for none.
func excludeOrigins(origins []uint64) map[uint64]bool {
	if len(origins) == 0 {
		return nil
	}
	m := make(map[uint64]bool, len(origins))
	for _, o := range origins {
		m[o] = true
	}
	return m
}

// ClusterOrigins returns the origins (incarnation ids) of this server and
// of every live member that answers Hello within ctx, sorted: the origins
// whose writes were first made in this cluster. A replication job leaves
// them out of what it follows from another cluster (WatchRequest's
// exclude_origins), so that it never brings back what that cluster got
// from this one. A member that does not answer is left out and the error
// says which; the origins found are returned with it.
func (s *Server) ClusterOrigins(ctx context.Context) ([]uint64, error) {
	out := []uint64{s.store.Origin()}
	var firstErr error
	for _, mb := range alivePeers(s.mem) {
		c, err := s.peers.tr.peer(mb.GRPCAddr)
		if err == nil {
			var resp *repldspb.HelloResponse
			if resp, err = c.hello(ctx, &repldspb.HelloRequest{}); err == nil {
				out = append(out, resp.Origin)
				continue
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("server: origin of member %s: %w", mb.Name, err)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), firstErr
}

// ApplyAdvance is Apply with vector advances (store.Apply's adv): after
// the nodes, each advance raises this server's vector entry of its origin
// to To when it holds at least From. A replication job applies a page of
// another cluster's nodes, whose seqs are not contiguous (the page holds
// only its prefix), and then raises the vector to the source's bookmark,
// so that digest sync among this cluster's servers does not send the
// same nodes again every round.
func (w *Writer) ApplyAdvance(ctx context.Context, nodes []store.Node, adv []store.Advance) (int, error) {
	if len(adv) == 0 {
		return w.Apply(ctx, nodes)
	}
	s := w.s
	if err := w.begin(ctx); err != nil {
		return 0, err
	}
	defer s.writes.Done()
	n, err := s.store.Apply(ctx, nodes, adv)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.Info("applied", "nodes", len(nodes), "changed", n, "first", nodes[0].Path)
	}
	return n, nil
}
