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

	"replds/follow"
	"replds/follow/followtest"
	repldspb "replds/proto"
	"replds/server/servertest"
)

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

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
	cfg := follow.DefaultConfig()
	cfg.Prefix = "/p"
	for _, i := range servers {
		cfg.Servers = append(cfg.Servers, c.Addr(i))
	}
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	cfg.IdleTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	if got := w.get(); got != c.Addr(other) {
		t.Fatalf("watching %s after server %d stopped, want %s", got, first, c.Addr(other))
	}

	applied, tokens := sink.Applied(), sink.Tokens()
	for p, n := range applied {
		if n != 1 {
			t.Errorf("%s applied %d times, want once: the resumed stream sent it again", p, n)
		}
	}
	if len(tokens) < 2 || tokens[0] != nil || tokens[len(tokens)-1] == nil {
		t.Errorf("sessions started from tokens %v, want nil first and the sink's token after", tokens)
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
