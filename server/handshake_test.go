package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
)

// rawConns opens n TCP connections to addr from source address src that
// never start TLS; they are closed at the end of the test.
func rawConns(t *testing.T, addr, src string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, src, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// closedByServer reports whether the server closed c before deadline.
func closedByServer(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func TestHandshake_SilentConnectionDropped(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""),
		func(i int, cfg *server.Config) { cfg.HandshakeTimeout = 300 * time.Millisecond })
	conn := rawConns(t, c.Addr(0), "127.0.0.1", 1)[0]
	start := time.Now()
	// gRPC's own default would keep it 120 s.
	if !closedByServer(conn, start.Add(10*time.Second)) {
		t.Fatalf("a connection that never handshakes is still open after 10 s")
	}
	t.Logf("silent connection closed after %v (handshake timeout 300ms)", time.Since(start).Round(time.Millisecond))
	c.Wait(5*time.Second, "the timeout counted", func() error {
		if got := refusals(t, c.Server(0), "handshake_timeout"); got != 1 {
			return errors.New("replds_refused_total{reason=handshake_timeout} not 1")
		}
		return nil
	})
}

// A flood of connections that never handshake, from an address the server
// does not know, takes the pending slots; connections past them are closed
// at once, and a client that authenticated before gets the reserve.
func TestHandshake_PendingBoundedWithReserve(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""), func(i int, cfg *server.Config) {
		cfg.HandshakeTimeout = time.Minute
		cfg.MaxPendingHandshakes = 8
		cfg.HandshakeReserve = 4
	})
	s := c.Server(0)
	put(t, c.Client(0), "/k", "v") // 127.0.0.1 has authenticated

	const flood = 200
	conns := rawConns(t, c.Addr(0), "127.0.0.2", flood)
	c.Wait(10*time.Second, "the flood refused", func() error {
		if got := refusals(t, s, "handshake_pending"); got < flood-8 {
			return errors.New("fewer refusals than connections past the bound")
		}
		return nil
	})
	closed := 0
	for _, conn := range conns {
		if closedByServer(conn, time.Now().Add(20*time.Millisecond)) {
			closed++
		}
	}
	if closed != flood-8 {
		t.Errorf("%d of %d flood connections closed at once, want %d (all but the 8 pending)", closed, flood, flood-8)
	}

	// A new connection of the known client gets through on the reserve.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	known := repldspb.NewRepldsClient(servertest.Dial(t, c.Addr(0), pki.DialOptions(t, servertest.ClientIdentity)...))
	if _, err := known.Get(ctx, &repldspb.GetRequest{Path: "/k"}); err != nil {
		t.Errorf("known client during the flood: %v", err)
	}
	// One from another unknown address does not.
	fromUnknown := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
		return d.DialContext(ctx, "tcp", addr)
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	unknown := repldspb.NewRepldsClient(servertest.Dial(t, c.Addr(0), append(pki.DialOptions(t, servertest.ClientIdentity), fromUnknown)...))
	if _, err := unknown.Get(ctx2, &repldspb.GetRequest{Path: "/k"}); err == nil {
		t.Errorf("a client from an unknown address got through while the pending slots were full")
	}
}
