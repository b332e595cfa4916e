package server

import (
	"context"
	"fmt"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// Import applies nodes that keep their own versions (restore --merge):
// each replaces the node at its path only if it is newer, through the
// Writer's Apply. Every path needs write; the reserved namespace is
// refused (job definitions carry their owner, recorded when they were
// validated: they are restored by rollback, which validates them again,
// or by server --restore-from), and so are versions beyond the clock
// limit. Nodes of this server's own origin change nothing: it has them,
// or newer ones, already.
func (s *Server) Import(ctx context.Context, req *repldspb.ImportRequest) (*repldspb.ImportResponse, error) {
	if len(req.Nodes) == 0 {
		return &repldspb.ImportResponse{}, nil
	}
	if len(req.Nodes) > s.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: %d nodes in one import, at most %d", store.ErrTooLarge, len(req.Nodes), s.cfg.MaxBatch)
	}
	limit := store.VersionLimit(s.now())
	nodes := make([]store.Node, len(req.Nodes))
	for i, p := range req.Nodes {
		n := wire.NodeFromProto(p)
		if err := nodepath.Validate(n.Path); err != nil {
			return nil, err
		}
		if err := s.authorize(ctx, acl.Write, n.Path); err != nil {
			return nil, err
		}
		if nodepath.IsReserved(n.Path) {
			return nil, fmt.Errorf("%w: %s: the reserved namespace is not imported", ErrPermission, nodepath.Quote(n.Path))
		}
		switch {
		case n.Version > limit:
			return nil, fmt.Errorf("%w: %s: version %d is ahead of this server's clock", store.ErrInvalidNode, nodepath.Quote(n.Path), n.Version)
		case n.Origin == 0 || n.Seq == 0:
			return nil, fmt.Errorf("%w: %s: origin and seq are required", store.ErrInvalidNode, nodepath.Quote(n.Path))
		case n.Deleted && len(n.Data) > 0:
			return nil, fmt.Errorf("%w: %s: a tombstone has no data", store.ErrInvalidNode, nodepath.Quote(n.Path))
		case len(n.Data) > s.cfg.MaxNodeSize:
			return nil, fmt.Errorf("%w: %s: %d bytes, at most %d", store.ErrTooLarge, nodepath.Quote(n.Path), len(n.Data), s.cfg.MaxNodeSize)
		}
		nodes[i] = n
	}
	changed, err := s.Writer().Apply(ctx, nodes)
	if err != nil {
		return nil, err
	}
	return &repldspb.ImportResponse{Changed: uint64(changed)}, nil
}
