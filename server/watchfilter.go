package server

import (
	"context"
	"fmt"
	"slices"

	repldspb "github.com/replds/replds/proto"
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
