package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
)

// openWatch opens a Watch of prefix on conn and waits for its first
// message (so that the server counts it), or returns the error that ended
// it.
func openWatch(ctx context.Context, conn *grpc.ClientConn, prefix string) (repldspb.Replds_WatchClient, error) {
	st, err := repldspb.NewRepldsClient(conn).Watch(ctx, &repldspb.WatchRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	if _, err := st.Recv(); err != nil {
		return nil, err
	}
	return st, nil
}

func TestWatch_StreamsPerConnectionBounded(t *testing.T) {
	c := servertest.NewCluster(t, 1, func(i int, cfg *server.Config) { cfg.MaxWatchPerConn = 3 })
	put(t, c.Client(0), "/w/a", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := servertest.Dial(t, c.Addr(0), c.DialOptions()...)
	for i := range 3 {
		if _, err := openWatch(ctx, conn, "/w"); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	_, err := openWatch(ctx, conn, "/w")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-watch-per-connection") {
		t.Fatalf("4th stream on one connection: err = %v, want ResourceExhausted naming --max-watch-per-connection", err)
	}
	// Another connection is counted apart.
	if _, err := openWatch(ctx, servertest.Dial(t, c.Addr(0), c.DialOptions()...), "/w"); err != nil {
		t.Fatalf("stream on a second connection: %v", err)
	}
	if got := refusals(t, c.Server(0), "watch_per_connection"); got != 1 {
		t.Errorf("replds_refused_total{reason=watch_per_connection} = %v, want 1", got)
	}
}

func TestWatch_StreamsPerIdentityBounded(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""),
		func(i int, cfg *server.Config) { cfg.MaxWatchPerIdentity = 2 })
	put(t, c.Client(0), "/w/a", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		if _, err := openWatch(ctx, servertest.Dial(t, c.Addr(0), pki.DialOptions(t, "host1")...), "/w"); err != nil {
			t.Fatalf("stream %d of host1: %v", i, err)
		}
	}
	_, err := openWatch(ctx, servertest.Dial(t, c.Addr(0), pki.DialOptions(t, "host1")...), "/w")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-watch-per-identity") {
		t.Fatalf("3rd stream of host1: err = %v, want ResourceExhausted naming --max-watch-per-identity", err)
	}
	if _, err := openWatch(ctx, servertest.Dial(t, c.Addr(0), pki.DialOptions(t, "host2")...), "/w"); err != nil {
		t.Fatalf("stream of host2: %v", err)
	}
	if got := refusals(t, c.Server(0), "watch_per_identity"); got != 1 {
		t.Errorf("replds_refused_total{reason=watch_per_identity} = %v, want 1", got)
	}
}

// slowConn dials addr with small HTTP/2 windows, so that a stream that is
// not read stops the server's sends after a few hundred KiB.
func slowConn(t *testing.T, addr string) *grpc.ClientConn {
	return servertest.Dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
}

// putBig stores n nodes of size bytes under prefix, in batches within the
// server's limits.
func putBig(t *testing.T, cl repldspb.RepldsClient, prefix string, n, size int) {
	t.Helper()
	for i := range n {
		req := &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: fmt.Sprintf("%s/%04d", prefix, i), Data: make([]byte, size)}}}
		if _, err := cl.Store(timeout(t), req); err != nil {
			t.Fatal(err)
		}
	}
}

// waitRefusal waits until server 0 of c has refused something for reason,
// and returns the most replds_watch_queued_bytes it saw meanwhile.
func waitRefusal(t *testing.T, c *servertest.Cluster, reason string) float64 {
	t.Helper()
	s := c.Server(0)
	maxQueued := 0.0
	c.Wait(10*time.Second, "a refusal for "+reason, func() error {
		maxQueued = max(maxQueued, servertest.Gathered(t, s, "replds_watch_queued_bytes"))
		if refusals(t, s, reason) < 1 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	return maxQueued
}

// A stream whose client does not read ends with ResourceExhausted after
// the send timeout; what it held is given back; the client sees the status
// once it reads what was queued, and resumes from its last bookmark.
func TestWatch_ClientThatDoesNotReadIsCut(t *testing.T) {
	c := servertest.NewCluster(t, 1, func(i int, cfg *server.Config) {
		cfg.WatchSendTimeout = 300 * time.Millisecond
		cfg.WatchPageBytes = 256 << 10
	})
	putBig(t, c.Client(0), "/big", 40, 128<<10) // 5 MiB
	s := c.Server(0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := repldspb.NewRepldsClient(slowConn(t, c.Addr(0))).Watch(ctx, &repldspb.WatchRequest{Prefix: "/big"})
	if err != nil {
		t.Fatal(err)
	}
	maxQueued := waitRefusal(t, c, "watch_slow_reader")
	// Two messages at most: the one gRPC holds and the one being sent.
	if limit := float64(2 * (256<<10 + 128<<10 + 4<<10)); maxQueued > limit {
		t.Errorf("replds_watch_queued_bytes reached %v while stalled, want at most %v", maxQueued, limit)
	}
	c.Wait(10*time.Second, "the cut stream's charge given back", func() error {
		if q := servertest.Gathered(t, s, "replds_watch_queued_bytes"); q != 0 {
			return fmt.Errorf("replds_watch_queued_bytes = %v", q)
		}
		return nil
	})
	var token *repldspb.Vector
	var got int
	for {
		msg, err := st.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--watch-send-timeout") {
				t.Fatalf("Recv after the cut: %v, want ResourceExhausted naming --watch-send-timeout", err)
			}
			break
		}
		got += len(msg.Nodes)
		if msg.Bookmark != nil {
			token = msg.Bookmark
		}
	}
	if got == 40 {
		t.Fatalf("the stalled stream delivered all 40 nodes before it was cut")
	}
	// Resuming from the last bookmark, with a client that reads, brings
	// the rest.
	next := watch(t, c.Client(0), "/big", token)
	rest := untilSynced(next)
	if got+len(rest) < 40 {
		t.Errorf("received %d nodes before the cut and %d after resuming, want at least 40 in all", got, len(rest))
	}
}

// Streams that do not read together hold at most --watch-memory: past it,
// the stream whose message would pass it ends with ResourceExhausted.
func TestWatch_TotalMemoryBounded(t *testing.T) {
	c := servertest.NewCluster(t, 1, func(i int, cfg *server.Config) {
		cfg.MaxNodeSize = 128 << 10
		cfg.MaxBatchBytes = 256 << 10
		cfg.WatchMemory = 5 << 20 // the least allowed is the largest message, 4.25 MiB
		cfg.WatchPageBytes = 1 << 20
		cfg.WatchSendTimeout = time.Minute
	})
	putBig(t, c.Client(0), "/big", 40, 128<<10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var streams []repldspb.Replds_WatchClient
	for range 8 {
		st, err := repldspb.NewRepldsClient(slowConn(t, c.Addr(0))).Watch(ctx, &repldspb.WatchRequest{Prefix: "/big"})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	maxQueued := waitRefusal(t, c, "watch_memory")
	if maxQueued > 5<<20 {
		t.Errorf("replds_watch_queued_bytes reached %v, want at most --watch-memory (%d)", maxQueued, 5<<20)
	}
	cut := 0
	for _, st := range streams {
		for {
			msg, err := st.Recv()
			if err == nil && msg.Synced {
				break
			}
			if err == nil {
				continue
			}
			if status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "--watch-memory") {
				cut++
			}
			break
		}
	}
	if cut == 0 {
		t.Errorf("no stream ended with ResourceExhausted naming --watch-memory")
	}
}
