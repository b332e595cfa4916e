package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/replds/replds/cluster"
	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

// Server is one replds peer. Create it with New, start it with Start (or
// Run), stop it with Close. Its methods are safe for concurrent use.
type Server struct {
	repldspb.UnimplementedRepldsServer
	repldspb.UnimplementedInternalServer

	cfg   Config
	log   *slog.Logger
	store *store.Store
	lis   net.Listener
	grpc  *grpc.Server
	dial  []grpc.DialOption
	sec   *security
	mem   *cluster.Membership
	peers *peerSet
	// jobs holds the job kinds clients may define (RegisterJobKind);
	// jobMgr runs the ones this server owns (nil without kinds).
	jobs   jobKinds
	jobMgr *jobs.Manager
	// jobCollectors are made on the first call of JobMetrics.
	jobMetricsOnce sync.Once
	jobCollectors  *jobCollectors
	// writers caches who may write anywhere, for tap; inflight bounds
	// the bytes of Store requests being handled (guard.go).
	writers  writerSet
	inflight inflight
	// watches bounds Watch streams and what they hold (watchlimits.go).
	watches watchLimits
	// handshakes bounds the connections still handshaking (handshake.go).
	handshakes handshakes
	// inbound tracks the peers' push streams into this server, on the
	// clock now (time.Now; the simulation's own in tests).
	inbound inbound
	now     func() time.Time
	// metrics holds the Prometheus collectors; http serves them (nil
	// without Config.HTTPAddr).
	metrics *metrics
	http    *httpServer

	// ctx is the server's lifetime: cancelled when Close begins. done is
	// its Done channel; background loops and streams select on it.
	ctx    context.Context
	cancel context.CancelFunc
	done   <-chan struct{}
	// stopping is cancelled first in Close, with cause store.ErrClosed:
	// long-lived streams (Watch, and peers' Push into this server) end on
	// it, so that the graceful stop waits only for requests such as Store.
	// draining is closed once no more writes can be accepted: pushers then
	// hand the last of them to their peers and stop.
	stopping    context.Context
	stopStreams context.CancelCauseFunc
	draining    chan struct{}
	// checked is closed once the start check (startCheck) has ended: the
	// Writer waits for it before writing.
	checked chan struct{}

	// incMu serializes incarnation checks (checkIncarnation).
	incMu sync.Mutex
	// caughtUp latches at the first completed sync round (setCaughtUp).
	caughtUp atomic.Bool

	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
	// writes counts the Writer's calls in progress (Writer.begin): Close
	// waits for them before the pushers drain, and refuses new ones.
	writes sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New opens the store in cfg.DataDir and binds the listeners. It starts
// nothing: call Start or Run.
func New(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		done:   ctx.Done(),
		now:    time.Now,

		draining: make(chan struct{}),
		checked:  make(chan struct{}),
	}
	s.stopping, s.stopStreams = context.WithCancelCause(context.Background())
	// Each step that holds a resource pushes its release; a failing step
	// releases them all, the last taken first.
	var undo cleanups
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	undo.push(cancel)
	if s.sec, err = newSecurity(&s.cfg); err != nil {
		return nil, err
	}
	if err := s.openStore(); err != nil {
		return nil, err
	}
	undo.push(func() { s.store.Close() })
	if s.lis, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("server: listen %s: %w", cfg.Addr, err)
	}
	undo.push(func() { s.lis.Close() })
	s.handshakes.max, s.handshakes.reserve = cfg.MaxPendingHandshakes, cfg.HandshakeReserve
	s.lis = &handshakeListener{Listener: s.lis, s: s}
	if s.cfg.Name == "" {
		s.cfg.Name = s.lis.Addr().String()
	}
	s.metrics = newMetrics(s)
	s.inflight.max = cfg.MaxInflightBytes
	s.watches.init(&s.cfg)
	s.dial = []grpc.DialOption{s.sec.dialOption()}
	s.grpc = s.newGRPCServer()
	s.peers = newPeerSet(s, newGRPCTransport(append(s.dial,
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.maxMessage()),
			grpc.MaxCallSendMsgSize(cfg.maxMessage()),
		))))
	if cfg.HTTPAddr != "" {
		if s.http, err = newHTTPServer(s); err != nil {
			return nil, err
		}
		undo.push(func() { s.http.lis.Close() })
	}
	if s.mem, err = newMembership(s); err != nil {
		return nil, err
	}
	undo.push(s.mem.Close)
	if cfg.JobKinds != nil {
		kinds, err := cfg.JobKinds(s)
		if err != nil {
			return nil, fmt.Errorf("server: jobs: %w", err)
		}
		for _, k := range kinds {
			if err := s.RegisterJobKind(k); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// cleanups is a stack of releases, for a constructor that fails halfway.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

// run calls the releases, the last pushed first.
func (c cleanups) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// openStore opens the store in the data directory, creating it.
func (s *Server) openStore() error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: data dir: %w", err)
	}
	scfg := store.DefaultConfig(filepath.Join(s.cfg.DataDir, "replds.db"))
	scfg.Logger = s.log
	scfg.MaxNodeSize = s.cfg.MaxNodeSize
	scfg.MaxBatch = s.cfg.MaxBatch
	scfg.MaxBatchBytes = s.cfg.MaxBatchBytes
	st, err := store.Open(scfg)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.store = st
	return nil
}

// newGRPCServer returns the gRPC server with both services registered.
func (s *Server) newGRPCServer() *grpc.Server {
	g := grpc.NewServer(
		grpc.Creds(&guardedCreds{TransportCredentials: s.sec.serverCreds(), s: s, tls: s.sec.tls != nil}),
		grpc.ConnectionTimeout(s.cfg.HandshakeTimeout),
		// Before any of a request's body is read (guard.go).
		grpc.InTapHandle(s.tap),
		grpc.ForceServerCodecV2(newLimitCodec(s.cfg.MaxRequestSize, func() { s.metrics.refused("request_too_large") })),
		// Errors are mapped to status codes before the metrics record them.
		grpc.ChainUnaryInterceptor(s.metrics.unaryInterceptor, s.errorInterceptor, s.inflightInterceptor),
		grpc.ChainStreamInterceptor(s.metrics.streamInterceptor, s.streamErrorInterceptor),
		grpc.MaxConcurrentStreams(4096),
		grpc.MaxRecvMsgSize(s.cfg.maxMessage()),
		grpc.MaxSendMsgSize(s.cfg.maxMessage()),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	repldspb.RegisterRepldsServer(g, s)
	repldspb.RegisterInternalServer(g, s)
	return g
}

// Addr returns the gRPC address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Name returns the server's member name.
func (s *Server) Name() string { return s.cfg.Name }

// DB returns the server's store, for tests and tools in this module.
func (s *Server) DB() *store.Store { return s.store }

// Start serves RPCs and starts membership and replication in the
// background. It returns at once. Writes wait until the server has asked
// its configured peers what they have seen of its own writes (startCheck),
// a few seconds at most.
func (s *Server) Start() {
	if s.sec.tls == nil {
		s.log.Warn("PLAIN MODE: no TLS; anyone who can reach this server can read and write every node, and join the cluster",
			"addr", s.Addr())
	}
	s.log.Info("server started", "addr", s.Addr(), "gossip", s.mem.Addr(), "name", s.cfg.Name,
		"origin", fmt.Sprintf("%016x", s.store.Origin()), "peers", s.cfg.Peers)
	s.goFunc(func() {
		if err := s.grpc.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve stopped", "err", err)
		}
	})
	s.goFunc(s.startCheck)
	s.goFunc(func() { s.mem.Run(s.ctx) })
	s.goFunc(s.syncLoop)
	if s.cfg.MemoryTrimInterval > 0 {
		s.goFunc(s.trimLoop)
	}
	s.peers.start()
	s.startJobs()
	if s.http != nil {
		s.log.Info("http serving", "addr", s.http.addr(), "paths", "/metrics /healthz /readyz")
		s.goFunc(s.http.serve)
	}
}

// Run starts the server and blocks until ctx is done, then closes it.
func (s *Server) Run(ctx context.Context) error {
	s.Start()
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	return s.Close()
}

// goFunc runs f in a goroutine that Close waits for. It refuses (returns
// false) once Close has begun.
func (s *Server) goFunc(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Close stops the server: it stops accepting RPCs (gracefully, within the
// grace period), leaves the membership, stops replication and closes the
// store. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		deadline := time.Now().Add(s.cfg.ShutdownGrace)
		if s.jobMgr != nil {
			// Jobs stop first: a backup in flight removes what it wrote.
			s.jobMgr.Close()
		}
		s.stopStreams(store.ErrClosed)

		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(time.Until(deadline)):
			s.log.Warn("graceful stop timed out; closing connections")
			s.grpc.Stop()
			<-stopped
		}
		// No write can begin any more (Writer.begin); those acknowledged
		// until now must not wait for this server to come back: push them
		// to the peers before going.
		s.writes.Wait()
		close(s.draining)
		if !s.peers.drained(deadline) {
			s.log.Warn("shutdown: some peers did not take the last writes; they will get them by sync once this server is back")
		}
		s.cancel()
		s.mem.Close()
		s.peers.close()
		if s.http != nil {
			s.http.close()
		}
		s.wg.Wait()
		s.closeErr = s.store.Close()
		s.log.Info("server stopped", "name", s.cfg.Name)
	})
	return s.closeErr
}

// GossipAddr returns the memberlist address the server listens on.
func (s *Server) GossipAddr() string { return s.mem.Addr() }

// Membership returns the server's view of the cluster, for reading (who is
// alive and ready, and when that changes). The server owns it and closes it.
func (s *Server) Membership() *cluster.Membership { return s.mem }

// AliveMembers returns how many members (this server included) are alive.
func (s *Server) AliveMembers() int {
	n := 0
	for _, m := range s.mem.Members() {
		if m.State.Live() {
			n++
		}
	}
	return n
}
