package server

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/buildinfo"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// Store applies a client's batch of writes atomically, once it is durable.
func (s *Server) Store(ctx context.Context, req *repldspb.StoreRequest) (*repldspb.StoreResponse, error) {
	if len(req.Writes) == 0 {
		return &repldspb.StoreResponse{}, nil
	}
	ws := make([]store.Write, len(req.Writes))
	for i, w := range req.Writes {
		if err := nodepath.Validate(w.Path); err != nil {
			return nil, err
		}
		if err := s.authorize(ctx, acl.Write, w.Path); err != nil {
			return nil, err
		}
		var err error
		ws[i], err = s.checkReserved(ctx, store.Write{Path: w.Path, Data: w.Data, Delete: w.Delete, Recursive: w.Recursive})
		if err != nil {
			return nil, err
		}
	}
	nodes, err := s.Writer().Write(ctx, ws)
	if err != nil {
		return nil, err
	}
	return &repldspb.StoreResponse{Nodes: wire.NodesToProto(nodes)}, nil
}

// Get returns one live leaf with its data.
func (s *Server) Get(ctx context.Context, req *repldspb.GetRequest) (*repldspb.GetResponse, error) {
	if err := nodepath.Validate(req.Path); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, acl.Read, req.Path); err != nil {
		return nil, err
	}
	n, err := s.store.Get(req.Path)
	if err != nil {
		return nil, err
	}
	return &repldspb.GetResponse{Node: wire.NodeToProto(n)}, nil
}

// listPage bounds the entries of one List message.
const listPage = 1000

// List lists the live children of a directory (or, recursively, every live
// leaf under it). A leaf lists as itself. Only readable entries are listed.
func (s *Server) List(req *repldspb.ListRequest, stream repldspb.Replds_ListServer) error {
	if err := nodepath.ValidatePrefix(req.Path); err != nil {
		return err
	}
	roots, readable, err := s.readable(stream.Context(), req.Path)
	if err != nil {
		return err
	}
	var entries []*repldspb.ListEntry
	seenDir := map[string]bool{}
	base := strings.TrimSuffix(req.Path, "/")
	visit := func(p string, m store.Meta) bool {
		if m.Deleted || (readable != nil && !readable(p)) {
			return true
		}
		if req.Recursive || p == req.Path {
			entries = append(entries, &repldspb.ListEntry{Path: p, Version: m.Version, Size: uint64(m.Size), Origin: m.Origin})
			return true
		}
		rest := p[len(base)+1:]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			dir := base + "/" + rest[:i]
			if !seenDir[dir] {
				seenDir[dir] = true
				entries = append(entries, &repldspb.ListEntry{Path: dir, Dir: true})
			}
			return true
		}
		entries = append(entries, &repldspb.ListEntry{Path: p, Version: m.Version, Size: uint64(m.Size), Origin: m.Origin})
		return true
	}
	for _, r := range roots {
		s.store.Walk(r, visit)
	}
	if len(roots) > 1 {
		slices.SortFunc(entries, func(a, b *repldspb.ListEntry) int { return strings.Compare(a.Path, b.Path) })
	}
	if len(entries) == 0 && req.Path != "/" {
		return fmt.Errorf("list %s: %w", req.Path, store.ErrNotFound)
	}
	for len(entries) > 0 {
		n := min(len(entries), listPage)
		if err := stream.Send(&repldspb.ListResponse{Entries: entries[:n]}); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// Status describes this server.
func (s *Server) Status(ctx context.Context, req *repldspb.StatusRequest) (*repldspb.StatusResponse, error) {
	// Members, addresses and vectors are for the cluster's own identities:
	// peers, and identities that may read something.
	if a := s.sec.acls.Get(); a != nil {
		id := identity(ctx)
		if !a.Check(id, acl.Peer, "") && len(a.Readable(id, "/")) == 0 {
			s.metrics.aclDenial(acl.Read.String())
			return nil, fmt.Errorf("%w: %q may not see the cluster status", ErrPermission, id)
		}
	}
	st := s.store.Stats()
	root := s.store.Root()
	resp := &repldspb.StatusResponse{
		Name:   s.cfg.Name,
		Origin: s.store.Origin(),
		Vector: wire.VectorToProto(s.store.Vector()),
		Root:   root[:],
		Nodes:  st.Nodes,
		Bytes:  st.Bytes,

		Peers:      s.metrics.peerLags(),
		Version:    buildinfo.Read().String(),
		Tombstones: st.Tombstones,
	}
	resp.Ready, _ = s.readiness()
	if je, ok := s.mem.LastJoinError(); ok {
		resp.LastJoinError = joinErrorText(je)
	}
	for _, m := range s.mem.Members() {
		resp.Members = append(resp.Members, &repldspb.Member{Name: m.Name, Addr: m.GRPCAddr, State: m.State.String()})
	}
	return resp, nil
}
