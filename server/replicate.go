package server

// The replication protocol proper, free of transport: each function works
// on a store and messages, and the gRPC handlers and loops (internal.go,
// sync.go, peers.go) only move the messages. The simulation test drives
// these same functions over a faulty in-memory network.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// pushPage returns the next push message of st's own writes of origin
// after cursor (nil when there is none), the new cursor, and whether more
// are waiting. origin is the push session's, not read again from st: a
// new incarnation must not pair its seqs with the old origin's cursor.
func pushPage(st *store.Store, origin, cursor uint64) (*repldspb.PushRequest, uint64, bool, error) {
	nodes, last, more, err := st.Changes(origin, cursor, pageNodes, pageBytes)
	if err != nil || len(nodes) == 0 {
		return nil, cursor, more, err
	}
	return &repldspb.PushRequest{Origin: origin, Prev: cursor, Nodes: wire.NodesToProto(nodes)}, last, more, nil
}

// applyPush applies a pushed message: its nodes, and the vector advance
// it vouches for (every seq of the origin between Prev and its last node
// not in it was superseded at the sender).
func applyPush(ctx context.Context, st *store.Store, msg *repldspb.PushRequest) (int, error) {
	nodes, err := nodesFromProto(msg.Origin, msg.Nodes)
	if err != nil || len(nodes) == 0 {
		return 0, err
	}
	adv := []store.Advance{{Origin: msg.Origin, From: msg.Prev, To: nodes[len(nodes)-1].Seq}}
	return st.Apply(ctx, nodes, adv)
}

// syncRequest is the digest st sends to a peer.
func syncRequest(st *store.Store) *repldspb.SyncRequest {
	root := st.Root()
	return &repldspb.SyncRequest{Vector: wire.VectorToProto(st.Vector()), Root: root[:]}
}

// answerSync answers a digest: for each origin where st knows more, the
// current winners the asker has not seen, in seq order and pages, the last
// page of each origin marked done; then, if the vectors are equal but the
// roots differ, a repair message. An origin is left out when a live push
// stream into the asker, which the asker names (pushed_since), already
// carries all of it after the asker's vector: this server's own, or a
// third server's.
//
// It reads the change index through Store.Changes rather than a
// store.Feed: the protocol answers per origin (each origin's pages end
// with its own vector advance, and origins a push carries are skipped),
// while a feed follows prefixes with one vector and no per-origin marks.
func answerSync(st *store.Store, req *repldspb.SyncRequest, send func(*repldspb.SyncResponse) error) error {
	ask := wire.VectorFromProto(req.Vector)
	mine := st.Vector()
	pushed := map[uint64]uint64{}
	for _, e := range req.PushedSince {
		if since, ok := pushed[e.Origin]; !ok || e.Seq < since {
			pushed[e.Origin] = e.Seq
		}
	}
	for _, o := range slices.Sorted(maps.Keys(mine)) {
		if mine[o] <= ask[o] {
			continue
		}
		if since, ok := pushed[o]; ok && since <= ask[o] {
			continue
		}
		cursor := ask[o]
		for {
			nodes, last, more, err := st.Changes(o, cursor, pageNodes, pageBytes)
			if err != nil {
				return err
			}
			msg := &repldspb.SyncResponse{Origin: o, Nodes: wire.NodesToProto(nodes)}
			if !more {
				msg.Done, msg.From, msg.Upto = true, ask[o], mine[o]
			}
			if err := send(msg); err != nil {
				return err
			}
			if !more {
				break
			}
			cursor = last
		}
	}
	root := st.Root()
	if maps.Equal(ask, mine) && !bytes.Equal(root[:], req.Root) {
		return send(&repldspb.SyncResponse{Repair: true})
	}
	return nil
}

// applySyncResponse applies one page of a sync answer (not a repair
// message): its nodes and, on an origin's last page, the vector advance.
func applySyncResponse(ctx context.Context, st *store.Store, msg *repldspb.SyncResponse) (int, error) {
	nodes, err := nodesFromProto(msg.Origin, msg.Nodes)
	if err != nil {
		return 0, err
	}
	var adv []store.Advance
	if msg.Done {
		adv = []store.Advance{{Origin: msg.Origin, From: msg.From, To: msg.Upto}}
	}
	if len(nodes) == 0 && len(adv) == 0 {
		return 0, nil
	}
	return st.Apply(ctx, nodes, adv)
}

// answerTree returns the hash-tree children of the requested nodes.
func answerTree(st *store.Store, req *repldspb.TreeRequest) (*repldspb.TreeResponse, error) {
	level := int(req.Level)
	if level >= store.TreeDepth {
		return nil, status.Errorf(codes.InvalidArgument, "tree level %d out of range", level)
	}
	width := 1
	for range level {
		width *= store.TreeFanout
	}
	resp := &repldspb.TreeResponse{}
	for _, idx := range req.Index {
		if int(idx) >= width {
			return nil, status.Errorf(codes.InvalidArgument, "tree index %d out of range at level %d", idx, level)
		}
		for _, h := range st.TreeChildren(level, int(idx)) {
			resp.Hashes = append(resp.Hashes, h[:])
		}
	}
	return resp, nil
}

// answerBuckets sends every node (live with data, or tombstone) of the
// requested leaf buckets, in pages.
func answerBuckets(st *store.Store, req *repldspb.BucketRequest, send func(*repldspb.SyncResponse) error) error {
	var page []*repldspb.Node
	size := 0
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		err := send(&repldspb.SyncResponse{Nodes: page})
		page, size = nil, 0
		return err
	}
	for _, b := range req.Buckets {
		if int(b) >= store.TreeLeaves {
			return status.Errorf(codes.InvalidArgument, "bucket %d out of range", b)
		}
		nodes, err := st.Bucket(int(b))
		if err != nil {
			return err
		}
		for _, n := range nodes {
			page = append(page, wire.NodeToProto(n))
			size += len(n.Data)
			if len(page) >= pageNodes || size >= pageBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// repairPeer is the far end of a hash-tree repair.
type repairPeer interface {
	tree(ctx context.Context, req *repldspb.TreeRequest) (*repldspb.TreeResponse, error)
	buckets(ctx context.Context, req *repldspb.BucketRequest, recv func(*repldspb.SyncResponse) error) error
}

// repairFrom descends the peer's hash tree where it differs from st's and
// applies the nodes of the differing leaf buckets: O(k log N) messages for
// k differing nodes. It returns the number of buckets fetched and of nodes
// that changed st.
func repairFrom(ctx context.Context, st *store.Store, peer repairPeer) (buckets, applied int, err error) {
	diff := []uint32{0}
	for level := 0; level < store.TreeDepth && len(diff) > 0; level++ {
		resp, err := peer.tree(ctx, &repldspb.TreeRequest{Level: uint32(level), Index: diff})
		if err != nil {
			return 0, 0, err
		}
		if len(resp.Hashes) != len(diff)*store.TreeFanout {
			return 0, 0, fmt.Errorf("tree level %d: %d hashes for %d nodes", level, len(resp.Hashes), len(diff))
		}
		var next []uint32
		for i, idx := range diff {
			local := st.TreeChildren(level, int(idx))
			for c := range store.TreeFanout {
				if !bytes.Equal(local[c][:], resp.Hashes[i*store.TreeFanout+c]) {
					next = append(next, idx*store.TreeFanout+uint32(c))
				}
			}
		}
		diff = next
	}
	if len(diff) == 0 {
		return 0, 0, nil
	}
	err = peer.buckets(ctx, &repldspb.BucketRequest{Buckets: diff}, func(msg *repldspb.SyncResponse) error {
		nodes, err := nodesFromProto(0, msg.Nodes)
		if err != nil {
			return err
		}
		n, err := st.Apply(ctx, nodes, nil)
		applied += n
		return err
	})
	return len(diff), applied, err
}
