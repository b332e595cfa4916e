package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/acl"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// Hello tells a peer our member name, gossip address and origin, and how
// many of the asker's own writes (req.Origin) we have seen: a starting
// peer asks (see startCheck).
func (s *Server) Hello(ctx context.Context, req *repldspb.HelloRequest) (*repldspb.HelloResponse, error) {
	if err := s.authorize(ctx, acl.Peer, ""); err != nil {
		return nil, err
	}
	resp := &repldspb.HelloResponse{Name: s.cfg.Name, GossipAddr: s.mem.Addr(), Origin: s.store.Origin()}
	if req.Origin != 0 {
		resp.Seen = s.store.Vector()[req.Origin]
	}
	return resp, nil
}

// Push receives a peer's own accepted writes, in its seq order. It ends when
// the peer closes the stream or when this server shuts down.
func (s *Server) Push(stream repldspb.Internal_PushServer) error {
	ctx := stream.Context()
	if err := s.authorize(ctx, acl.Peer, ""); err != nil {
		return err
	}
	// Recv cannot select on shutdown, so it runs in its own goroutine. That
	// goroutine ends when Recv fails, at the latest when this handler has
	// returned and gRPC cancels the stream.
	type recv struct {
		msg *repldspb.PushRequest
		err error
	}
	msgs := make(chan recv)
	in := s.inbound.open()
	defer s.inbound.close(in)
	go func() {
		for {
			msg, err := stream.Recv()
			select {
			case msgs <- recv{msg, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var r recv
		select {
		case <-s.stopping.Done():
			return status.Error(codes.Unavailable, "server shutting down")
		case r = <-msgs:
		}
		if errors.Is(r.err, io.EOF) {
			return stream.SendAndClose(&repldspb.PushResponse{})
		}
		if r.err != nil {
			return r.err
		}
		// The ACLs may have taken the peer permission away since the
		// stream opened.
		if err := s.authorize(ctx, acl.Peer, ""); err != nil {
			return err
		}
		if err := s.receivePush(ctx, in, r.msg); err != nil {
			return err
		}
	}
}

// receivePush applies one message of the push stream in, and records its
// delivery for the claims of this server's digests (inbound).
func (s *Server) receivePush(ctx context.Context, in *inStream, msg *repldspb.PushRequest) error {
	s.metrics.pushReceived(msg)
	start := time.Now()
	s.inbound.delivered(in, msg.Origin, msg.Prev, s.now())
	n, err := applyPush(ctx, s.store, msg)
	if err != nil {
		return err
	}
	s.inbound.delivered(in, msg.Origin, msg.Prev, s.now())
	if n > 0 {
		// Info, as "stored" is on the origin: the operator sees the write
		// arrive everywhere.
		if batches, nodes, ok := s.inbound.applied(s.now(), n); ok {
			s.log.Info("replicated", "origin", fmt.Sprintf("%016x", msg.Origin), "batches", batches, "nodes", nodes,
				"first", msg.Nodes[0].Path)
		}
	}
	s.metrics.committed("apply", start, nil)
	return nil
}

// nodesFromProto converts replicated nodes, checking that each belongs to
// origin (0: any) and is well formed.
func nodesFromProto(origin uint64, pn []*repldspb.Node) ([]store.Node, error) {
	out := make([]store.Node, len(pn))
	for i, p := range pn {
		if origin != 0 && p.Origin != origin {
			return nil, status.Errorf(codes.InvalidArgument, "node %q of origin %016x in a message of origin %016x", p.Path, p.Origin, origin)
		}
		if p.Origin == 0 || p.Seq == 0 || p.Version == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "node %q without origin, seq or version", p.Path)
		}
		if p.Deleted && len(p.Data) > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "tombstone %q with data", p.Path)
		}
		out[i] = wire.NodeFromProto(p)
	}
	return out, nil
}

// Sync answers an asker's digest: per origin where we know more, the
// current winners it has not seen, in seq order, in pages.
func (s *Server) Sync(req *repldspb.SyncRequest, stream repldspb.Internal_SyncServer) error {
	if err := s.authorize(stream.Context(), acl.Peer, ""); err != nil {
		return err
	}
	send := s.metrics.syncServed(req, stream).Send
	return s.serveSync(stream.Context(), req, func(m *repldspb.SyncResponse) error {
		// An ACL reload may take the peer permission away mid-stream.
		if err := s.authorize(stream.Context(), acl.Peer, ""); err != nil {
			return err
		}
		return send(m)
	})
}

// serveSync answers a peer's digest through send (see answerSync).
func (s *Server) serveSync(ctx context.Context, req *repldspb.SyncRequest, send func(*repldspb.SyncResponse) error) error {
	// An asker that has seen more of our own writes than we hold means we
	// were restored from an older state.
	if o := s.store.Origin(); req.Vector != nil {
		s.checkIncarnation(ctx, o, wire.VectorFromProto(req.Vector)[o])
	}
	return answerSync(s.store, req, send)
}

// Tree returns hash-tree children for repair.
func (s *Server) Tree(ctx context.Context, req *repldspb.TreeRequest) (*repldspb.TreeResponse, error) {
	if err := s.authorize(ctx, acl.Peer, ""); err != nil {
		return nil, err
	}
	return answerTree(s.store, req)
}

// Buckets streams every node (live with data, or tombstone) of the given
// hash-tree leaf buckets.
func (s *Server) Buckets(req *repldspb.BucketRequest, stream repldspb.Internal_BucketsServer) error {
	if err := s.authorize(stream.Context(), acl.Peer, ""); err != nil {
		return err
	}
	return answerBuckets(s.store, req, func(m *repldspb.SyncResponse) error {
		if err := s.authorize(stream.Context(), acl.Peer, ""); err != nil {
			return err
		}
		return stream.Send(m)
	})
}
