package server

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/acl"
	repldspb "github.com/replds/replds/proto"
)

// The guard is the server's first line against hostile load. In order:
//
//   - tap runs when a request's headers arrive, before any of its body is
//     read: it refuses a Store or Import from an identity that may write
//     nowhere and
//     an internal RPC from an identity that is not a peer;
//   - limitCodec runs once a message is read and before it is decoded: a
//     request of a method that needs little (Get, List, Watch, Status and
//     the internal Hello, Tree, Buckets) larger than Config.MaxRequestSize
//     is refused, so that no decoded structure is built from it;
//   - inflight bounds the bytes of Store requests being handled
//     server-wide (Config.MaxInflightBytes).
//
// gRPC checks a message's length against one bound for the whole server
// (Config.maxMessage) before reading it; the per-method bound can only be
// checked once the message is read.

// internalService prefixes the full method names of the Internal service,
// which only peers may call.
const internalService = "/replds.v1.Internal/"

// tap implements grpc.InTapHandle: it runs on the connection's reader
// before the request body is read, and must not block.
func (s *Server) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	a := s.sec.acls.Get()
	if a == nil {
		return ctx, nil
	}
	var op acl.Op
	switch {
	case info.FullMethodName == repldspb.Replds_Store_FullMethodName, info.FullMethodName == repldspb.Replds_Import_FullMethodName:
		op = acl.Write
	case strings.HasPrefix(info.FullMethodName, internalService):
		op = acl.Peer
	default:
		return ctx, nil
	}
	id := identity(ctx)
	var err error
	switch {
	case op == acl.Write && !s.writers.mayWrite(a, id):
		s.metrics.refused("no_write_rule")
		err = status.Errorf(codes.PermissionDenied, "permission denied: %q may not write anywhere", id)
	case op == acl.Peer && !a.Check(id, acl.Peer, ""):
		s.metrics.refused("not_peer")
		err = status.Errorf(codes.PermissionDenied, "permission denied: %q is not a peer", id)
	default:
		return ctx, nil
	}
	s.log.Info("access denied", "identity", id, "op", op.String(), "method", path.Base(info.FullMethodName), "before_body", true)
	s.metrics.aclDenial(op.String())
	s.metrics.rpcDone(info.FullMethodName, time.Now(), err)
	return nil, err
}

// writerSet caches, per ACL, the identities that have at least one write
// rule. Safe for concurrent use.
type writerSet struct {
	mu  sync.Mutex
	acl *acl.ACL
	ids map[string]bool
}

// mayWrite reports whether id has a write rule anywhere under a.
func (w *writerSet) mayWrite(a *acl.ACL, id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.acl != a {
		w.acl = a
		w.ids = map[string]bool{}
		for _, r := range a.Rules() {
			if r.Op == acl.Write {
				w.ids[r.Identity] = true
			}
		}
	}
	return w.ids[id]
}

// limitCodec is the proto codec with a size bound on the requests of
// methods that need little. It is safe for concurrent use.
type limitCodec struct {
	encoding.CodecV2
	// small bounds a small request; refused counts a refusal.
	small   int
	refused func()
}

func newLimitCodec(small int, refused func()) *limitCodec {
	return &limitCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), small: small, refused: refused}
}

// Unmarshal implements encoding.CodecV2.
func (c *limitCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch v.(type) {
	case *repldspb.GetRequest, *repldspb.ListRequest, *repldspb.WatchRequest, *repldspb.StatusRequest, *repldspb.ForgetMemberRequest,
		*repldspb.HelloRequest, *repldspb.TreeRequest, *repldspb.BucketRequest:
		if n := data.Len(); n > c.small {
			c.refused()
			return fmt.Errorf("request too large: a %s of %d bytes, at most %d allowed (--max-request-size)",
				proto.MessageName(v.(proto.Message)).Name(), n, c.small)
		}
	}
	return c.CodecV2.Unmarshal(data, v)
}

// inflight bounds the bytes of requests being handled. Safe for
// concurrent use.
type inflight struct {
	max int64
	cur atomic.Int64
}

// acquire takes n bytes, or reports false (taking nothing) if that would
// pass the bound. A request larger than the bound alone is taken when
// nothing else is in flight, so that the bound never refuses a request
// forever: it is also bounded by the message size.
func (f *inflight) acquire(n int64) bool {
	for {
		cur := f.cur.Load()
		if cur > 0 && cur+n > f.max {
			return false
		}
		if f.cur.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (f *inflight) release(n int64) { f.cur.Add(-n) }

// inflightInterceptor holds a Store or Import request's size in the
// in-flight budget while it is handled, and refuses it when the budget is
// spent.
func (s *Server) inflightInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch req.(type) {
	case *repldspb.StoreRequest, *repldspb.ImportRequest:
	default:
		return h(ctx, req)
	}
	n := int64(proto.Size(req.(proto.Message)))
	if !s.inflight.acquire(n) {
		s.metrics.refused("inflight_bytes")
		return nil, status.Errorf(codes.ResourceExhausted,
			"server busy: a request of %d bytes would pass the %d bytes of requests in flight allowed (--max-inflight-bytes); retry later",
			n, s.inflight.max)
	}
	defer s.inflight.release(n)
	return h(ctx, req)
}
