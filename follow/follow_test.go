package follow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/follow/followtest"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
)

// want waits until sink holds want.
func want(t *testing.T, c *servertest.Cluster, sink *followtest.MemSink, want map[string]string) {
	t.Helper()
	c.Wait(20*time.Second, "sink contents", func() error {
		got := sink.Live()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("sink holds %v, want %v", got, want)
		}
		return nil
	})
}

// watching records the server of the latest Watch stream opened.
type watching struct{ addr atomic.Value }

func (w *watching) get() string { s, _ := w.addr.Load().(string); return s }

// config returns a follower config for the servers of c, recording into w
// (if not nil) which one it watches.
func config(t *testing.T, c *servertest.Cluster, w *watching, servers ...int) follow.Config {
	cfg := baseConfig(t)
	for _, i := range servers {
		cfg.Servers = append(cfg.Servers, c.Addr(i))
	}
	cfg.DialOptions = c.DialOptions()
	if w != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
			method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method == repldspb.Replds_Watch_FullMethodName {
				w.addr.Store(cc.Target())
			}
			return streamer(ctx, desc, cc, method, opts...)
		}))
	}
	return cfg
}

// baseConfig returns a follower config of /p with short backoffs, logging
// to the test, without servers.
func baseConfig(t *testing.T) follow.Config {
	cfg := follow.DefaultConfig()
	cfg.Prefix = "/p"
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	cfg.IdleTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

// waitFor polls cond until it returns nil, failing the test after 20s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// start runs f until the test ends and returns Run's result channel.
func start(t *testing.T, f *follow.Follower) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
	return done
}

// TestFollower_FailoverResumesFromToken: when the watched server stops, the
// follower moves to the other one and resumes from the sink's token: the
// nodes already applied are not sent again, and new writes keep coming.
func TestFollower_FailoverResumesFromToken(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	c.Store(0, servertest.Put("/p/a", "A"), servertest.Put("/p/b", "B"), servertest.Put("/other/x", "X"))
	c.Store(0, servertest.Put("/p/c", "C"))
	c.WaitConverged(20 * time.Second)

	sink := followtest.NewMemSink()
	var w watching
	f, err := follow.New(config(t, c, &w, 0, 1), sink)
	if err != nil {
		t.Fatal(err)
	}
	start(t, f)
	want(t, c, sink, map[string]string{"/p/a": "A", "/p/b": "B", "/p/c": "C"})
	c.Wait(10*time.Second, "a synced bookmark", func() error {
		if n, token := sink.Synced(); n == 0 || token == nil {
			return errors.New("not synced yet")
		}
		return nil
	})

	first := 0
	if w.get() != c.Addr(0) {
		first = 1
	}
	other := 1 - first
	c.Stop(first)
	c.Store(other, servertest.Put("/p/d", "D"))
	want(t, c, sink, map[string]string{"/p/a": "A", "/p/b": "B", "/p/c": "C", "/p/d": "D"})

	applied, tokens := sink.Applied(), sink.Tokens()
	for p, n := range applied {
		if n != 1 {
			t.Errorf("%s applied %d times, want once: the resumed stream sent it again", p, n)
		}
	}
	// One session before the stop and exactly one after: the follower went
	// straight to the other server (the next in turn), from the token.
	if len(tokens) != 2 || tokens[0] != nil || tokens[1] == nil {
		t.Errorf("sessions started from tokens %v, want two: nil, then the sink's token", tokens)
	}
}

// TestFollower_SinkErrors: a sink error ends the session and the follower
// retries, from the sink's token (the pages come again); with Once it gives
// up after MaxAttempts; an error wrapping ErrPermanent ends Run at once.
func TestFollower_SinkErrors(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	c.Store(0, servertest.Put("/p/a", "A"), servertest.Put("/p/b", "B"))
	diskFull := errors.New("injected: disk full")

	t.Run("retried", func(t *testing.T) {
		sink := followtest.NewMemSink()
		failures := 0
		sink.Hook = func(_ context.Context, method string) error {
			if method == "Bookmark" && failures < 2 {
				failures++
				return diskFull
			}
			return nil
		}
		cfg := config(t, c, nil, 0)
		cfg.Once = true
		f, err := follow.New(cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Run(context.Background()); err != nil {
			t.Fatalf("Run(once) with a sink failing twice = %v, want nil", err)
		}
		applied, tokens := sink.Applied(), sink.Tokens()
		if len(tokens) != 3 || applied["/p/a"] != 3 {
			t.Errorf("%d sessions, /p/a applied %d times; want 3 each (the failed bookmarks kept no token)", len(tokens), applied["/p/a"])
		}
		if got := sink.Live(); len(got) != 2 {
			t.Errorf("sink holds %v, want /p/a and /p/b", got)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		sink := followtest.NewMemSink()
		sink.Hook = func(_ context.Context, method string) error {
			if method == "Apply" {
				return diskFull
			}
			return nil
		}
		cfg := config(t, c, nil, 0)
		cfg.Once, cfg.MaxAttempts = true, 3
		f, err := follow.New(cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Run(context.Background())
		if !errors.Is(err, diskFull) || !strings.Contains(err.Error(), "after 3 attempts") {
			t.Fatalf("Run(once) with a failing sink = %v, want the sink's error after 3 attempts", err)
		}
	})
	t.Run("permanent", func(t *testing.T) {
		sink := followtest.NewMemSink()
		denied := fmt.Errorf("write /p/a: %w", follow.ErrPermanent)
		sink.Hook = func(_ context.Context, method string) error {
			if method == "Apply" {
				return denied
			}
			return nil
		}
		f, err := follow.New(config(t, c, nil, 0), sink)
		if err != nil {
			t.Fatal(err)
		}
		// Bounded, for when the error is retried after all.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = f.Run(ctx)
		if !errors.Is(err, denied) {
			t.Fatalf("Run with a permanent sink error = %v, want it", err)
		}
		if tokens := sink.Tokens(); len(tokens) != 1 {
			t.Errorf("%d sessions, want 1: a permanent error is not retried", len(tokens))
		}
	})
}

// sourceFunc is a follow.Source over a function.
type sourceFunc func(ctx context.Context, req *repldspb.WatchRequest) (follow.Stream, error)

func (f sourceFunc) Watch(ctx context.Context, req *repldspb.WatchRequest) (follow.Stream, error) {
	return f(ctx, req)
}

// stream is a scripted follow.Stream: it returns msgs, then what then
// returns (nil then: silent until ctx ends).
type stream struct {
	ctx  context.Context
	msgs []*repldspb.WatchResponse
	then func(ctx context.Context) (*repldspb.WatchResponse, error)
}

func (s *stream) Recv() (*repldspb.WatchResponse, error) {
	if len(s.msgs) > 0 {
		m := s.msgs[0]
		s.msgs = s.msgs[1:]
		return m, nil
	}
	if s.then != nil {
		return s.then(s.ctx)
	}
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

var errCut = errors.New("injected: connection cut")

func cut(context.Context) (*repldspb.WatchResponse, error) { return nil, errCut }

func node(path string, version uint64, data string) *repldspb.Node {
	return &repldspb.Node{Path: path, Version: version, Origin: 1, Seq: version, Data: []byte(data)}
}

func vector(seq uint64) *repldspb.Vector {
	return &repldspb.Vector{Entries: []*repldspb.VectorEntry{{Origin: 1, Seq: seq}}}
}

// scripted returns a config whose one server opens the streams of
// sessions in turn (the last one again once they run out), with the
// other settings of config.
func scripted(t *testing.T, sessions ...func(ctx context.Context) follow.Stream) follow.Config {
	cfg := baseConfig(t)
	cfg.Servers = []string{"scripted"}
	var n atomic.Int64
	src := sourceFunc(func(ctx context.Context, req *repldspb.WatchRequest) (follow.Stream, error) {
		i := min(int(n.Add(1))-1, len(sessions)-1)
		return sessions[i](ctx), nil
	})
	cfg.Source = func(string) follow.Source { return src }
	return cfg
}

// TestFollower_ReplayStartsUnseen: a complete replay that follows a failed
// one starts with nothing seen, so that a path deleted meanwhile, which the
// first replay brought, is deleted at the end of the second.
func TestFollower_ReplayStartsUnseen(t *testing.T) {
	cfg := scripted(t,
		// Session 1, from nothing: a and b, synced; then the connection drops.
		func(ctx context.Context) follow.Stream {
			return &stream{ctx: ctx, then: cut, msgs: []*repldspb.WatchResponse{
				{Nodes: []*repldspb.Node{node("/p/a", 1, "A"), node("/p/b", 2, "B")}, Bookmark: vector(2), Synced: true},
			}}
		},
		// Session 2: the server cannot resume and replays a and b; cut
		// before the replay ends.
		func(ctx context.Context) follow.Stream {
			return &stream{ctx: ctx, then: cut, msgs: []*repldspb.WatchResponse{
				{Reset_: true, Nodes: []*repldspb.Node{node("/p/a", 1, "A"), node("/p/b", 2, "B")}},
			}}
		},
		// Session 3, from nothing again: b was deleted meanwhile, and its
		// tombstone is gone.
		func(ctx context.Context) follow.Stream {
			return &stream{ctx: ctx, msgs: []*repldspb.WatchResponse{
				{Nodes: []*repldspb.Node{node("/p/a", 1, "A")}, Bookmark: vector(4), Synced: true},
			}}
		},
	)
	sink := followtest.NewMemSink()
	f, err := follow.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	start(t, f)
	waitFor(t, "the second replay", func() error {
		if n, _ := sink.Synced(); n < 2 {
			return fmt.Errorf("%d synced bookmarks, want 2", n)
		}
		return nil
	})
	if got := sink.Live(); fmt.Sprint(got) != fmt.Sprint(map[string]string{"/p/a": "A"}) {
		t.Errorf("sink holds %v after the second replay, want only /p/a: /p/b counted as seen by the failed replay", got)
	}
	if tokens := sink.Tokens(); len(tokens) != 3 || tokens[0] != nil || tokens[1] == nil || tokens[2] != nil {
		t.Errorf("sessions started from tokens %v, want nil, the bookmark's, nil", tokens)
	}
}

// TestFollower_BusySinkIsNotSilence: only the server's silence counts
// toward IdleTimeout, not the time the sink spends: a sink blocked for
// several idle timeouts, again and again, while the server keeps sending,
// costs no session. (When the sink returns, both the idle timer and the
// next message are ready and select picks either: a follower that counted
// the sink's time fails each block with even odds, 1-2^-blocks in all.)
func TestFollower_BusySinkIsNotSilence(t *testing.T) {
	const blocks = 7
	cfg := scripted(t, func(ctx context.Context) follow.Stream {
		// A server: a page and its bookmark, then a heartbeat bookmark
		// every quarter of the idle timeout.
		var seq atomic.Uint64
		seq.Store(1)
		return &stream{ctx: ctx,
			msgs: []*repldspb.WatchResponse{
				{Nodes: []*repldspb.Node{node("/p/a", 1, "A")}, Bookmark: vector(1), Synced: true},
			},
			then: func(ctx context.Context) (*repldspb.WatchResponse, error) {
				select {
				case <-time.After(50 * time.Millisecond):
					return &repldspb.WatchResponse{Bookmark: vector(seq.Add(1))}, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			},
		}
	})
	cfg.IdleTimeout = 200 * time.Millisecond
	sink := followtest.NewMemSink()
	busy, release := make(chan time.Time), make(chan struct{})
	var bookmarks atomic.Int64
	sink.Hook = func(ctx context.Context, method string) error {
		if method == "Bookmark" && bookmarks.Add(1) <= blocks {
			busy <- time.Now()
			<-release
		}
		return nil
	}
	f, err := follow.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	start(t, f)
	for range blocks {
		since := <-busy
		waitFor(t, "the sink busy for 2 idle timeouts", func() error {
			if d := time.Since(since); d <= 2*cfg.IdleTimeout {
				return fmt.Errorf("busy for %v", d)
			}
			return nil
		})
		release <- struct{}{}
	}
	// A few bookmarks after the last block: a follower that counted the
	// sink's time would have ended the session by then.
	waitFor(t, "bookmarks after the busy sink", func() error {
		if n := bookmarks.Load(); n < blocks+3 {
			return fmt.Errorf("%d bookmarks", n)
		}
		return nil
	})
	if tokens := sink.Tokens(); len(tokens) != 1 {
		t.Errorf("%d sessions, want 1: the sink's work counted as the server's silence", len(tokens))
	}
	if got := sink.Live(); fmt.Sprint(got) != fmt.Sprint(map[string]string{"/p/a": "A"}) {
		t.Errorf("sink holds %v, want /p/a", got)
	}
}
