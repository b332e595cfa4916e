package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

// transport carries the replication loops (push, digest sync, hash-tree
// repair) and the membership's Hello to the peers. grpcTransport is the
// real one; the simulation test has an in-memory one that drops, reorders
// and cuts messages.
//
// Its methods are safe for concurrent use and do not block on the network.
// After close, peer fails with store.ErrClosed.
type transport interface {
	// peer returns the internal API of the server at addr (its gRPC
	// address). Clients are shared: the caller does not close them.
	peer(addr string) (peerClient, error)
	// reset breaks every open stream and connection, so that their users
	// fail and start again on new ones, after an ACL change: the peer
	// check runs at the handshake.
	reset()
	// close breaks everything, as reset, and refuses later calls.
	close()
}

// peerClient is one peer's internal API as the replication loops use it.
// Its methods are safe for concurrent use; each blocks until the call ends
// or ctx is done, and returns ctx's error or the peer's.
type peerClient interface {
	repairPeer
	// hello asks the peer for its name, gossip address and origin, and
	// what it has seen of the asker's origin req.Origin.
	hello(ctx context.Context, req *repldspb.HelloRequest) (*repldspb.HelloResponse, error)
	// push opens a push stream, which lives until ctx is done, the stream
	// breaks, or CloseAndRecv.
	push(ctx context.Context) (pushStream, error)
	// sync sends a digest and calls recv with each message of the answer,
	// in order, until the answer ends (nil), recv fails or the stream
	// breaks (that error).
	sync(ctx context.Context, req *repldspb.SyncRequest, recv func(*repldspb.SyncResponse) error) error
}

// pushStream is the sending end of a push stream. One goroutine uses it.
type pushStream interface {
	// Send sends a message; an error ends the stream.
	Send(*repldspb.PushRequest) error
	// CloseAndRecv ends the stream and waits for the peer's answer: it
	// applied every message sent.
	CloseAndRecv() (*repldspb.PushResponse, error)
	// Context is done once the stream is broken.
	Context() context.Context
}

// grpcTransport reaches peers over gRPC, one shared lazily connecting
// client connection per address.
type grpcTransport struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn // by gRPC address
	closed bool
}

func newGRPCTransport(opts []grpc.DialOption) *grpcTransport {
	return &grpcTransport{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

func (t *grpcTransport) peer(addr string) (peerClient, error) {
	c, err := t.conn(addr)
	if err != nil {
		return nil, err
	}
	return grpcPeer{repldspb.NewInternalClient(c)}, nil
}

// conn returns the client connection to addr.
func (t *grpcTransport) conn(addr string) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, store.ErrClosed
	}
	if c, ok := t.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, t.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	t.conns[addr] = c
	return c, nil
}

// reset closes every connection, so that each is dialed again and its
// certificate checked against the current ACLs (see
// security.dialOption): without this a push stream opened before the ACLs
// took the peer permission away would keep sending data.
func (t *grpcTransport) reset() {
	t.mu.Lock()
	conns := t.conns
	t.conns = map[string]*grpc.ClientConn{}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (t *grpcTransport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.reset()
}

// grpcPeer is a peer's internal API over gRPC.
type grpcPeer struct{ c repldspb.InternalClient }

func (p grpcPeer) hello(ctx context.Context, req *repldspb.HelloRequest) (*repldspb.HelloResponse, error) {
	return p.c.Hello(ctx, req)
}

func (p grpcPeer) push(ctx context.Context) (pushStream, error) {
	return p.c.Push(ctx)
}

func (p grpcPeer) sync(ctx context.Context, req *repldspb.SyncRequest, recv func(*repldspb.SyncResponse) error) error {
	stream, err := p.c.Sync(ctx, req)
	if err != nil {
		return err
	}
	return recvAll(stream, recv)
}

func (p grpcPeer) tree(ctx context.Context, req *repldspb.TreeRequest) (*repldspb.TreeResponse, error) {
	return p.c.Tree(ctx, req)
}

func (p grpcPeer) buckets(ctx context.Context, req *repldspb.BucketRequest, recv func(*repldspb.SyncResponse) error) error {
	stream, err := p.c.Buckets(ctx, req)
	if err != nil {
		return err
	}
	return recvAll(stream, recv)
}

// recvAll passes every message of a server stream to recv.
func recvAll(stream interface {
	Recv() (*repldspb.SyncResponse, error)
}, recv func(*repldspb.SyncResponse) error) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := recv(msg); err != nil {
			return err
		}
	}
}

var (
	_ transport  = (*grpcTransport)(nil)
	_ peerClient = grpcPeer{}
	_ pushStream = (repldspb.Internal_PushClient)(nil)
)
