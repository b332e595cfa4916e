package server

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	repldspb "github.com/replds/replds/proto"
)

// MeasureSyncRound runs one digest sync round of s against the server at
// addr, over a connection of its own, and returns the bytes the round
// exchanged in both directions (messages and headers as framed by gRPC,
// without TLS and TCP overhead). Tests and benchmarks use it to show that
// an idle round does not grow with the store.
func MeasureSyncRound(ctx context.Context, s *Server, addr string) (int64, error) {
	h := &byteCounter{}
	conn, err := grpc.NewClient(addr, append(s.dial, grpc.WithStatsHandler(h))...)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := s.syncWith(ctx, grpcPeer{repldspb.NewInternalClient(conn)}, nil); err != nil {
		return 0, err
	}
	return h.n.Load(), nil
}

// byteCounter is a gRPC stats handler counting wire bytes of RPCs.
type byteCounter struct{ n atomic.Int64 }

func (b *byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b *byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (b *byteCounter) HandleConn(context.Context, stats.ConnStats) {}

func (b *byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.InPayload:
		b.n.Add(int64(s.WireLength))
	case *stats.OutPayload:
		b.n.Add(int64(s.WireLength))
	case *stats.InHeader:
		b.n.Add(int64(s.WireLength))
	case *stats.InTrailer:
		b.n.Add(int64(s.WireLength))
	case *stats.OutHeader:
		// The request's header frame: method, authority and metadata.
		b.n.Add(int64(len(s.FullMethod)) + 64)
	}
}
