package follow

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/replds/replds/limits"
	repldspb "github.com/replds/replds/proto"
)

// Source opens Watch streams on one server: a gRPC client by default, an
// in-memory server in simulations. The follower calls Watch from Run's
// goroutine, one stream at a time per follower.
type Source interface {
	// Watch opens a stream of the Watch protocol for req. The stream ends
	// when ctx ends: its Recv returns then, with an error.
	Watch(ctx context.Context, req *repldspb.WatchRequest) (Stream, error)
}

// Stream is an open Watch stream. The follower calls Recv from one
// goroutine; Recv blocks until a message, an error, or the end of the
// context the stream was opened with.
type Stream interface {
	// Recv returns the next message, or io.EOF once the server closed the
	// stream without an error.
	Recv() (*repldspb.WatchResponse, error)
}

// maxRecvMsg bounds one Watch message: what a server with the default
// limits sends at most (a live batch carries as much data as one Store
// call, the largest node included, plus metadata), far above gRPC's 4 MiB
// default.
var maxRecvMsg = limits.MaxMessage(limits.MaxNodeSize, limits.MaxBatchBytes)

// Client keepalive: gRPC refuses a ping interval below 10s, which is also
// the servers' enforcement minimum; the timeout is how long an unanswered
// ping waits before the connection is closed.
const (
	keepaliveMinTime = 10 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// keepaliveOption finds a dead connection even when the idle timer is not
// running (a sink busy for long), at the pace servers accept.
func keepaliveOption(idleTimeout time.Duration) grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time:    max(keepaliveMinTime, idleTimeout),
		Timeout: keepaliveTimeout,
	})
}

// grpcSource is the Source of a gRPC client.
type grpcSource struct{ client repldspb.RepldsClient }

func (s grpcSource) Watch(ctx context.Context, req *repldspb.WatchRequest) (Stream, error) {
	return s.client.Watch(ctx, req, grpc.MaxCallRecvMsgSize(maxRecvMsg))
}
