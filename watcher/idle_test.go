package watcher_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
)

// proxy forwards TCP connections to a server and can freeze them: from
// then on it forwards nothing more, in either direction, and keeps every
// connection open, like a server that hangs or a path that black-holes.
type proxy struct {
	l      net.Listener
	target string
	frozen atomic.Bool
	stop   chan struct{}
	// accepted counts client connections; down counts chunks forwarded
	// from the server to the client.
	accepted, down atomic.Int64

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, stop: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		l.Close()
		close(p.stop)
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.accepted.Add(1)
		p.wg.Go(func() { p.pipe(s, c, nil) })
		p.wg.Go(func() { p.pipe(c, s, &p.down) })
	}
}

// pipe copies src to dst until either fails; once frozen, it holds what it
// read until the proxy closes.
func (p *proxy) pipe(dst, src net.Conn, count *atomic.Int64) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.frozen.Load() {
				<-p.stop
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
			if count != nil {
				count.Add(1)
			}
		}
		if err != nil {
			return
		}
	}
}

// TestWatch_IdleStreamGetsHeartbeats: with nothing changing, a Watch
// stream still gets a bare bookmark every BookmarkInterval.
func TestWatch_IdleStreamGetsHeartbeats(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	c.Store(0, servertest.Put("/app/a", "A"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.Client(0).Watch(ctx, &repldspb.WatchRequest{Prefix: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv during replay: %v", err)
		}
		if msg.Synced {
			break
		}
	}
	interval := c.Config(0).BookmarkInterval
	last := time.Now()
	for i := range 3 {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv heartbeat %d: %v", i, err)
		}
		gap := time.Since(last)
		last = time.Now()
		if len(msg.Nodes) > 0 || msg.Bookmark == nil {
			t.Fatalf("message %d on an idle stream: %d nodes, bookmark %v; want a bare bookmark", i, len(msg.Nodes), msg.Bookmark != nil)
		}
		// Generous: the ticker and this goroutine may lag on a loaded
		// machine; a stream without heartbeats would send nothing at all.
		if gap > 5*interval {
			t.Errorf("heartbeat %d came after %v, want about %v", i, gap, interval)
		}
		t.Logf("heartbeat %d after %v", i, gap.Round(time.Millisecond))
	}
}

// TestWatcher_IdleServerFailover: a quiet but healthy stream is kept;
// a server that stops answering without closing the connection is left
// for another after IdleTimeout.
func TestWatcher_IdleServerFailover(t *testing.T) {
	t.Parallel()
	c := servertest.NewCluster(t, 2)
	proxies := []*proxy{newProxy(t, c.Addr(0)), newProxy(t, c.Addr(1))}
	p := newPull(t, c, "/app", 0)
	p.cfg.Follow.Servers = []string{proxies[0].addr(), proxies[1].addr()}
	interval := c.Config(0).BookmarkInterval
	// Ten heartbeats: margin for a loaded machine running tests in
	// parallel under the race detector.
	p.cfg.Follow.IdleTimeout = 10 * interval
	p.start()
	c.Store(0, servertest.Put("/app/x", "1"))
	p.waitFile(c, "x", "1", false)

	used := 0
	if proxies[1].accepted.Load() > 0 {
		used = 1
	}
	other := 1 - used
	if proxies[other].accepted.Load() != 0 {
		t.Fatalf("both servers were used before any failure")
	}

	// Quiet for longer than the idle timeout: heartbeats keep the stream.
	from := proxies[used].down.Load()
	c.Wait(20*time.Second, "heartbeats", func() error {
		if n := proxies[used].down.Load() - from; n < 15 {
			return errors.New("fewer than 15 chunks from the server")
		}
		return nil
	})
	if n := proxies[other].accepted.Load(); n != 0 {
		t.Fatalf("the watcher left a healthy idle server (%d connections to the other)", n)
	}

	// The server in use hangs: the watcher moves to the other one.
	proxies[used].frozen.Store(true)
	start := time.Now()
	c.Store(other, servertest.Put("/app/y", "2"))
	p.waitFile(c, "y", "2", false)
	took := time.Since(start)
	t.Logf("failover from a silent server took %v (idle timeout %v)", took.Round(time.Millisecond), p.cfg.Follow.IdleTimeout)
	if proxies[other].accepted.Load() == 0 {
		t.Fatal("the change arrived without a connection to the other server")
	}
	if took > p.cfg.Follow.IdleTimeout+5*time.Second {
		t.Errorf("failover took %v, want about the idle timeout %v (not gRPC's own timeouts)", took, p.cfg.Follow.IdleTimeout)
	}
}
