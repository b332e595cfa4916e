// Package servertest runs an in-process replds cluster for tests: real
// servers with bbolt in temporary directories, gRPC and memberlist on
// loopback ports picked by the kernel.
package servertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
)

// Cluster is a set of servers peered with each other. Its methods are for
// the test goroutine only, except Client and DialOptions, which any
// goroutine of the test may call.
type Cluster struct {
	t       testing.TB
	opts    []Option
	cfgs    []server.Config
	servers []*server.Server // nil while stopped

	// mu guards the client side, made on first use.
	mu    sync.Mutex
	conns []*grpc.ClientConn
	dial  []grpc.DialOption
}

// Option adjusts the configuration of every server before it starts.
type Option func(i int, cfg *server.Config)

// NewCluster starts n servers and waits until each sees the others as
// alive members. Everything is closed at test cleanup.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts, cfgs: make([]server.Config, n), servers: make([]*server.Server, n), conns: make([]*grpc.ClientConn, n)}
	t.Cleanup(c.close)
	for i := range n {
		cfg := c.config(i)
		if i > 0 {
			cfg.Peers = []string{c.cfgs[0].Addr}
		}
		c.cfgs[i] = cfg
		c.start(i)
	}
	// Restarts rejoin through every other server.
	for i := range n {
		c.cfgs[i].Peers = nil
		for j := range n {
			if j != i {
				c.cfgs[i].Peers = append(c.cfgs[i].Peers, c.cfgs[j].Addr)
			}
		}
	}
	c.WaitMembers(10 * time.Second)
	return c
}

// config returns the configuration of a new server i: the defaults for
// tests, then the cluster's options, then extra.
func (c *Cluster) config(i int, extra ...Option) server.Config {
	t := c.t
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.SyncInterval = 200 * time.Millisecond
	cfg.RejoinInterval = 500 * time.Millisecond
	cfg.BookmarkInterval = 200 * time.Millisecond
	cfg.ShutdownGrace = 5 * time.Second
	cfg.GossipProfile = "local"
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).
		With("server", i)
	for _, o := range c.opts {
		o(i, &cfg)
	}
	for _, o := range extra {
		o(i, &cfg)
	}
	return cfg
}

// Add starts a new, empty server peered with the running ones, waits until
// it is a member, and returns its index.
func (c *Cluster) Add() int {
	c.t.Helper()
	i := c.AddWith()
	c.WaitMembers(10 * time.Second)
	return i
}

// AddWith starts a new, empty server peered with the running ones, with
// opts applied after the cluster's options, and returns its index at once:
// it does not wait for the server to become a member (it may never, e.g.
// with an identity the others do not accept as a peer).
func (c *Cluster) AddWith(opts ...Option) int {
	c.t.Helper()
	i := len(c.servers)
	cfg := c.config(i, opts...)
	for j := range c.servers {
		cfg.Peers = append(cfg.Peers, c.cfgs[j].Addr)
	}
	c.cfgs = append(c.cfgs, cfg)
	c.servers = append(c.servers, nil)
	c.mu.Lock()
	c.conns = append(c.conns, nil)
	c.mu.Unlock()
	c.start(i)
	return i
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	s, err := server.New(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("start server %d: %v", i, err)
	}
	// Pin the addresses so that a restart comes back where peers expect it.
	c.cfgs[i].Addr = s.Addr()
	c.cfgs[i].GossipAddr = s.GossipAddr()
	s.Start()
	c.servers[i] = s
}

// N returns the number of servers.
func (c *Cluster) N() int { return len(c.servers) }

// Server returns server i (nil while stopped).
func (c *Cluster) Server(i int) *server.Server { return c.servers[i] }

// Addr returns the gRPC address of server i.
func (c *Cluster) Addr(i int) string { return c.cfgs[i].Addr }

// Config returns the configuration server i was started with (its
// addresses pinned to those it bound).
func (c *Cluster) Config(i int) server.Config { return c.cfgs[i] }

// DialOptions returns the options a client needs to reach the servers. In
// a TLS cluster (WithTLS) the client authenticates as ClientIdentity with
// a certificate of the cluster's PKI.
func (c *Cluster) DialOptions() []grpc.DialOption {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialOptionsLocked()
}

func (c *Cluster) dialOptionsLocked() []grpc.DialOption {
	c.t.Helper()
	if c.dial != nil {
		return c.dial
	}
	files := c.cfgs[0].TLS
	if !files.Enabled() {
		c.dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		return c.dial
	}
	p, ok := pkis.Load(files.CA)
	if !ok {
		c.t.Fatalf("servertest: server 0 uses CA %s, which is not of a live servertest.PKI", files.CA)
	}
	c.dial = p.(*PKI).DialOptions(c.t, ClientIdentity)
	return c.dial
}

// SetACL atomically replaces the ACL file of every server with text and
// reloads every running server. It returns the reload errors (a malformed
// text leaves the previous rules in force).
func (c *Cluster) SetACL(text string) error {
	c.t.Helper()
	written := map[string]bool{}
	for i, cfg := range c.cfgs {
		if cfg.ACLFile == "" {
			c.t.Fatalf("servertest: server %d has no ACL file", i)
		}
		if !written[cfg.ACLFile] {
			writeFile(c.t, cfg.ACLFile, []byte(text), 0o644)
			written[cfg.ACLFile] = true
		}
	}
	var errs []error
	for i, s := range c.servers {
		if s == nil {
			continue
		}
		if err := s.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("server %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Dial returns a client connection to addr with opts, closed at the end of
// the test.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Client returns a public API client of server i.
func (c *Cluster) Client(i int) repldspb.RepldsClient {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns[i] == nil {
		conn, err := grpc.NewClient(c.Addr(i), c.dialOptionsLocked()...)
		if err != nil {
			c.t.Fatalf("dial server %d: %v", i, err)
		}
		c.conns[i] = conn
	}
	return repldspb.NewRepldsClient(c.conns[i])
}

// Stop closes server i (gracefully). Its data directory is kept.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if c.servers[i] == nil {
		return
	}
	if err := c.servers[i].Close(); err != nil {
		c.t.Errorf("close server %d: %v", i, err)
	}
	c.servers[i] = nil
}

// Restart starts server i again on its data directory and addresses.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Stop(i)
	c.start(i)
}

// WaitMembers waits until every running server sees every other running
// server as alive.
func (c *Cluster) WaitMembers(timeout time.Duration) {
	c.t.Helper()
	running := 0
	for _, s := range c.servers {
		if s != nil {
			running++
		}
	}
	c.Wait(timeout, "membership", func() error {
		for i, s := range c.servers {
			if s == nil {
				continue
			}
			if n := s.AliveMembers(); n != running {
				return fmt.Errorf("server %d sees %d alive members, want %d", i, n, running)
			}
		}
		return nil
	})
}

// WaitConverged waits until every running server has the same hash root and
// version vector.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.t.Helper()
	c.Wait(timeout, "convergence", func() error {
		var first *server.Server
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			if first == nil {
				first = s
				continue
			}
			if a, b := first.DB().Root(), s.DB().Root(); a != b {
				return fmt.Errorf("%s root %x, %s root %x", first.Name(), a, s.Name(), b)
			}
		}
		return nil
	})
}

// Wait polls cond until it returns nil, failing the test with its last
// error after timeout.
func (c *Cluster) Wait(timeout time.Duration, what string, cond func() error) {
	c.t.Helper()
	if err := Eventually(context.Background(), timeout, cond); err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Eventually polls cond every 10ms until it returns nil or timeout passes,
// and returns its last error then.
func Eventually(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}

func (c *Cluster) close() {
	c.mu.Lock()
	conns := c.conns
	c.mu.Unlock()
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
	for i := range c.servers {
		c.Stop(i)
	}
}
