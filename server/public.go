package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"replds/acl"
	"replds/nodepath"
	repldspb "replds/proto"
	"replds/store"
)

// Store applies a client's batch of writes atomically, once it is durable.
func (s *Server) Store(ctx context.Context, req *repldspb.StoreRequest) (*repldspb.StoreResponse, error) {
	const method = "Store"
	if len(req.Writes) == 0 {
		return &repldspb.StoreResponse{}, nil
	}
	ws := make([]store.Write, len(req.Writes))
	var size int
	for i, w := range req.Writes {
		if err := nodepath.Validate(w.Path); err != nil {
			return nil, toStatus(s.log, method, err)
		}
		if err := s.authorize(ctx, acl.Write, w.Path); err != nil {
			return nil, toStatus(s.log, method, err)
		}
		ws[i] = store.Write{Path: w.Path, Data: w.Data, Delete: w.Delete, Recursive: w.Recursive}
		size += len(w.Data)
	}
	nodes, err := s.writeNodes(ctx, ws)
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	if len(nodes) > 0 {
		s.log.Info("stored", "nodes", len(nodes), "bytes", size, "first", nodes[0].Path)
	}
	resp := &repldspb.StoreResponse{Nodes: make([]*repldspb.Node, len(nodes))}
	for i, n := range nodes {
		resp.Nodes[i] = nodeToProto(n)
	}
	return resp, nil
}

// Get returns one live leaf with its data.
func (s *Server) Get(ctx context.Context, req *repldspb.GetRequest) (*repldspb.GetResponse, error) {
	const method = "Get"
	if err := nodepath.Validate(req.Path); err != nil {
		return nil, toStatus(s.log, method, err)
	}
	if err := s.authorize(ctx, acl.Read, req.Path); err != nil {
		return nil, toStatus(s.log, method, err)
	}
	n, err := s.store.Get(req.Path)
	if err != nil {
		return nil, toStatus(s.log, method, err)
	}
	return &repldspb.GetResponse{Node: nodeToProto(n)}, nil
}

// listPage bounds the entries of one List message.
const listPage = 1000

// List lists the live children of a directory (or, recursively, every live
// leaf under it). A leaf lists as itself. Only readable entries are listed.
func (s *Server) List(req *repldspb.ListRequest, stream repldspb.Replds_ListServer) error {
	const method = "List"
	if err := nodepath.ValidatePrefix(req.Path); err != nil {
		return toStatus(s.log, method, err)
	}
	roots, readable, err := s.readable(stream.Context(), req.Path)
	if err != nil {
		return toStatus(s.log, method, err)
	}
	var entries []*repldspb.ListEntry
	seenDir := map[string]bool{}
	base := strings.TrimSuffix(req.Path, "/")
	visit := func(p string, m store.Meta) bool {
		if m.Deleted || (readable != nil && !readable(p)) {
			return true
		}
		if req.Recursive || p == req.Path {
			entries = append(entries, &repldspb.ListEntry{Path: p, Version: m.Version, Size: uint64(m.Size)})
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
		entries = append(entries, &repldspb.ListEntry{Path: p, Version: m.Version, Size: uint64(m.Size)})
		return true
	}
	for _, r := range roots {
		s.store.Walk(r, visit)
	}
	if len(roots) > 1 {
		slices.SortFunc(entries, func(a, b *repldspb.ListEntry) int { return strings.Compare(a.Path, b.Path) })
	}
	if len(entries) == 0 && req.Path != "/" {
		return toStatus(s.log, method, fmt.Errorf("list %s: %w", req.Path, store.ErrNotFound))
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
			return nil, toStatus(s.log, "Status", fmt.Errorf("%w: %q may not see the cluster status", errPermission, id))
		}
	}
	st := s.store.Stats()
	root := s.store.Root()
	resp := &repldspb.StatusResponse{
		Name:   s.cfg.Name,
		Origin: s.store.Origin(),
		Vector: vectorToProto(s.store.Vector()),
		Root:   root[:],
		Nodes:  st.Nodes,
		Bytes:  st.Bytes,

		Peers:      s.metrics.peerLags(),
		Version:    ReadBuildInfo().String(),
		Tombstones: st.Tombstones,
	}
	resp.Ready, _ = s.readiness()
	for _, m := range s.mem.Members() {
		resp.Members = append(resp.Members, &repldspb.Member{Name: m.Name, Addr: m.GRPCAddr, State: m.State.String()})
	}
	return resp, nil
}

func nodeToProto(n store.Node) *repldspb.Node {
	return &repldspb.Node{
		Path:    n.Path,
		Version: n.Version,
		Origin:  n.Origin,
		Seq:     n.Seq,
		Deleted: n.Deleted,
		Data:    n.Data,
	}
}

func nodeFromProto(p *repldspb.Node) store.Node {
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

func nodesToProto(ns []store.Node) []*repldspb.Node {
	out := make([]*repldspb.Node, len(ns))
	for i, n := range ns {
		out[i] = nodeToProto(n)
	}
	return out
}

func vectorToProto(v store.Vector) *repldspb.Vector {
	pv := &repldspb.Vector{Entries: make([]*repldspb.VectorEntry, 0, len(v))}
	for _, o := range slices.Sorted(maps.Keys(v)) {
		pv.Entries = append(pv.Entries, &repldspb.VectorEntry{Origin: o, Seq: v[o]})
	}
	return pv
}

// VectorFromProto converts a wire vector; nil gives an empty vector.
func VectorFromProto(pv *repldspb.Vector) store.Vector {
	v := store.Vector{}
	for _, e := range pv.GetEntries() {
		if e.Seq > v[e.Origin] {
			v[e.Origin] = e.Seq
		}
	}
	return v
}
