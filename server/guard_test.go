package server_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
)

// refusals returns replds_refused_total{reason} of s.
func refusals(t *testing.T, s *server.Server, reason string) float64 {
	t.Helper()
	return servertest.Gathered(t, s, "replds_refused_total", "reason", reason)
}

// longToken returns a resume token of n origins.
func longToken(n int) *repldspb.Vector {
	v := &repldspb.Vector{}
	for i := range n {
		v.Entries = append(v.Entries, &repldspb.VectorEntry{Origin: uint64(i + 1), Seq: 1 << 40})
	}
	return v
}

func TestGuard_SmallRequestsBoundedBeforeDecoding(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	cl := c.Client(0)
	max := c.Config(0).MaxRequestSize
	big := "/" + strings.Repeat("a", max)

	_, err := cl.Get(timeout(t), &repldspb.GetRequest{Path: big})
	if err == nil || !strings.Contains(err.Error(), "request too large: a GetRequest of") {
		t.Errorf("Get of a %d-byte path: err = %v, want request too large", len(big), err)
	}
	// A token of 10k origins (about 200 KB) is refused before it is
	// decoded into anything.
	st, err := cl.Watch(timeout(t), &repldspb.WatchRequest{Prefix: "/", Token: longToken(10000)})
	if err == nil {
		_, err = st.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "request too large: a WatchRequest of") {
		t.Errorf("Watch with a 10k-origin token: err = %v, want request too large", err)
	}
	if got := refusals(t, c.Server(0), "request_too_large"); got != 2 {
		t.Errorf("replds_refused_total{reason=request_too_large} = %v, want 2", got)
	}
	// A Store of the same size is within its own bound.
	put(t, cl, "/ok", strings.Repeat("v", max))
}

// A token longer than MaxTokenOrigins, but within the request size, gets
// a full replay (a reset) and is not kept: 100 such streams hold no more
// than 100 streams without a token.
func TestWatch_LongTokenReplaysInFullAndIsNotKept(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	cl := c.Client(0)
	put(t, cl, "/w/a", "1")
	origins := c.Config(0).MaxTokenOrigins + 1000

	next := watch(t, cl, "/w", longToken(origins))
	if msg := next(); !msg.Reset_ {
		t.Fatalf("first message of a Watch with a %d-origin token: %v, want a reset", origins, msg)
	}
	if got := untilSynced(next); len(got) != 1 || got[0] != "/w/a" {
		t.Fatalf("replay = %v, want [/w/a]", got)
	}

	const streams = 100
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range streams {
		st, err := cl.Watch(ctx, &repldspb.WatchRequest{Prefix: "/w", Token: longToken(origins)})
		if err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if msg.Synced {
				break
			}
		}
	}
	grown := int64(heap()) - int64(before)
	// A kept token of 5k origins is a map of at least 5k × 16 bytes, 8 MB
	// for 100 streams; an idle stream costs about 15 KiB.
	if limit := int64(streams * 40 << 10); grown > limit {
		t.Errorf("heap grew %d bytes for %d streams with %d-origin tokens, want at most %d", grown, streams, origins, limit)
	}
	if got := refusals(t, c.Server(0), "token_origins"); got != streams+1 {
		t.Errorf("replds_refused_total{reason=token_origins} = %v, want %d", got, streams+1)
	}
	t.Logf("heap grew %d bytes for %d Watch streams with %d-origin tokens", grown, streams, origins)
}

// rawCall opens method on conn and half-closes it without sending a
// request message, then waits for the answer: only a refusal that does
// not need the body comes back before ctx ends.
func rawCall(ctx context.Context, conn *grpc.ClientConn, method string) error {
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return err
	}
	var resp emptypb.Empty
	return st.RecvMsg(&resp)
}

func TestGuard_RefusedBeforeTheBodyIsRead(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, peersACL+"reader /data read\n"))
	s := c.Server(0)
	tests := []struct {
		name, cn, method, want string
	}{
		{"store by an identity without write rules", "reader", repldspb.Replds_Store_FullMethodName, `"reader" may not write anywhere`},
		{"import by an identity without write rules", "reader", repldspb.Replds_Import_FullMethodName, `"reader" may not write anywhere`},
		{"hello by a non-peer", "client", repldspb.Internal_Hello_FullMethodName, `"client" is not a peer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := rawCall(ctx, servertest.Dial(t, c.Addr(0), pki.DialOptions(t, tt.cn)...), tt.method)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s with no body sent: err = %v, want PermissionDenied saying %s", tt.method, err, tt.want)
			}
		})
	}
	if got := refusals(t, s, "no_write_rule"); got != 2 {
		t.Errorf("replds_refused_total{reason=no_write_rule} = %v, want 2", got)
	}
	// A writer's Store still needs its body: no answer until it comes.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := rawCall(ctx, servertest.Dial(t, c.Addr(0), pki.DialOptions(t, "client")...), repldspb.Replds_Store_FullMethodName); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Store by a writer with no body sent: err = %v, want DeadlineExceeded (waiting for the body)", err)
	}
}

// silentPeer returns the address of a listener that accepts connections
// and never answers: a server that has it as --peer waits the whole start
// check (3 s) before it writes.
func silentPeer(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return lis.Addr().String()
}

func TestGuard_InflightBytesBounded(t *testing.T) {
	peer := silentPeer(t)
	c := servertest.NewCluster(t, 1, func(i int, cfg *server.Config) {
		cfg.MaxNodeSize = 256 << 10
		cfg.MaxBatchBytes = 1 << 20
		cfg.MaxInflightBytes = 5 << 20 // the least allowed: the largest message
		cfg.Peers = []string{peer}
	})
	// Writes wait for the start check, which waits for the silent peer:
	// the Stores below are all in flight at once.
	const calls, size = 10, 1 << 20
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			req := &repldspb.StoreRequest{}
			for j := range 4 {
				req.Writes = append(req.Writes, &repldspb.Write{Path: fmt.Sprintf("/in/%d/%d", i, j), Data: make([]byte, size/4-64)})
			}
			_, err := c.Client(0).Store(timeout(t), req)
			errs <- err
		}()
	}
	ok, busy := 0, 0
	for range calls {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "--max-inflight-bytes"):
			busy++
		default:
			t.Errorf("Store: %v", err)
		}
	}
	// 5 MiB holds at most 5 requests of 1 MiB.
	if ok > 5 || busy < calls-5 {
		t.Errorf("%d Stores of 1 MiB in flight under 5 MiB: %d accepted, %d refused; want at most 5 accepted", calls, ok, busy)
	}
	if got := refusals(t, c.Server(0), "inflight_bytes"); got != float64(busy) {
		t.Errorf("replds_refused_total{reason=inflight_bytes} = %v, want %d", got, busy)
	}
	if got := servertest.Gathered(t, c.Server(0), "replds_inflight_request_bytes"); got != 0 {
		t.Errorf("replds_inflight_request_bytes = %v after the calls, want 0", got)
	}
}
