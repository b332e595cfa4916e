package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	"replds/cluster"
	repldspb "replds/proto"
	"replds/store"
)

// Replication page limits: a push or sync message carries at most this
// many nodes or bytes of data.
const (
	pageNodes = 8192
	pageBytes = 4 << 20
)

// peerSet holds the gRPC connections to peers and one pusher per alive
// peer.
type peerSet struct {
	s   *Server
	log *slog.Logger

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn // by gRPC address
	pushers map[string]*pusher          // by member name
	closed  bool
}

func newPeerSet(s *Server) *peerSet {
	return &peerSet{
		s:       s,
		log:     s.log.With("component", "replication"),
		conns:   map[string]*grpc.ClientConn{},
		pushers: map[string]*pusher{},
	}
}

// start runs the loop that keeps one pusher per alive peer.
func (p *peerSet) start() {
	p.s.goFunc(p.reconcileLoop)
}

// conn returns the (shared, lazily connecting) client connection to addr.
func (p *peerSet) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, store.ErrClosed
	}
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(p.s.dial,
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(p.s.cfg.maxMessage()),
			grpc.MaxCallSendMsgSize(p.s.cfg.maxMessage()),
		))...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerSet) reconcileLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		changed := p.s.mem.Changed()
		p.reconcile()
		select {
		case <-p.s.done:
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// reconcile starts pushers for new alive peers and stops the others.
func (p *peerSet) reconcile() {
	alive := map[string]cluster.Member{}
	for _, m := range alivePeers(p.s.mem) {
		alive[m.Name] = m
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, pu := range p.pushers {
		if m, ok := alive[name]; !ok || m.GRPCAddr != pu.addr {
			pu.cancel()
			delete(p.pushers, name)
		}
	}
	if p.closed {
		return
	}
	for name, m := range alive {
		if _, ok := p.pushers[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(p.s.ctx)
		pu := &pusher{set: p, name: name, addr: m.GRPCAddr, cancel: cancel, done: make(chan struct{})}
		if !p.s.goFunc(func() { pu.run(ctx) }) {
			cancel()
			return
		}
		p.pushers[name] = pu
	}
}

// close stops the pushers and closes the connections. The goroutines are
// waited for by Server.Close.
func (p *peerSet) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, pu := range p.pushers {
		pu.cancel()
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// redial closes every connection to peers, so that each is dialed again
// and its certificate checked against the current ACLs (see
// security.dialOption): the peer check happens in the handshake only, and
// without this a push stream opened before the ACLs took the peer
// permission away would keep sending data. Users of a closed connection
// fail and retry on a new one.
func (p *peerSet) redial() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	conns := p.conns
	p.conns = map[string]*grpc.ClientConn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// randomPeer returns the connection to a random alive peer.
func (p *peerSet) randomPeer() (cluster.Member, *grpc.ClientConn, bool) {
	peers := alivePeers(p.s.mem)
	if len(peers) == 0 {
		return cluster.Member{}, nil, false
	}
	m := peers[rand.IntN(len(peers))]
	c, err := p.conn(m.GRPCAddr)
	if err != nil {
		return cluster.Member{}, nil, false
	}
	return m, c, true
}

// pusher streams this server's own accepted writes to one peer, in seq
// order, as they are committed (eager push): it wakes on every commit of
// the store's own writes (store.Written), whoever made them. A broken
// stream restarts from the current head: what it missed is found by digest
// sync.
type pusher struct {
	set    *peerSet
	name   string
	addr   string
	cancel context.CancelFunc
	// done is closed when run returns.
	done chan struct{}
}

// errDrained ends a push session that handed every write to the peer at
// shutdown.
var errDrained = errors.New("server: pushed everything before shutdown")

// drained waits until every pusher has handed this server's writes to its
// peer and stopped (see Server.draining), or until deadline. It reports
// whether all did.
func (p *peerSet) drained(deadline time.Time) bool {
	p.mu.Lock()
	var pushers []*pusher
	for _, pu := range p.pushers {
		pushers = append(pushers, pu)
	}
	p.mu.Unlock()
	timeout := time.After(time.Until(deadline))
	for _, pu := range pushers {
		select {
		case <-pu.done:
		case <-timeout:
			return false
		}
	}
	return true
}

func (pu *pusher) run(ctx context.Context) {
	defer close(pu.done)
	const minBackoff = 50 * time.Millisecond
	backoff := minBackoff
	for {
		start := time.Now()
		err := pu.session(ctx)
		if time.Since(start) > time.Minute {
			backoff = minBackoff // a healthy stream broke: retry soon
		}
		if ctx.Err() != nil || errors.Is(err, errDrained) {
			return
		}
		select {
		case <-pu.set.s.draining:
			return // shutting down: no new stream
		default:
		}
		pu.set.log.Debug("push stream ended", "peer", pu.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-pu.set.s.draining:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (pu *pusher) session(ctx context.Context) error {
	st := pu.set.s.store
	origin := st.Origin()
	conn, err := pu.set.conn(pu.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := repldspb.NewInternalClient(conn).Push(ctx)
	if err != nil {
		return err
	}
	cursor := st.Vector()[origin]
	for {
		// Taken before the read, so that no commit after it goes unseen.
		written := st.Written()
		msg, next, more, err := pushPage(st, cursor)
		if err != nil {
			return err
		}
		if msg != nil {
			if err := stream.Send(msg); err != nil {
				if errors.Is(err, io.EOF) {
					_, err = stream.CloseAndRecv()
				}
				return err
			}
			pu.set.s.metrics.pushSent(pu.name, msg)
			cursor = next
		}
		if more {
			continue
		}
		select {
		case <-pu.set.s.draining:
			// No write can come any more, and every one up to the head
			// was sent: the peer's answer to the end of the stream says
			// it applied them all.
			if _, last, _, err := pushPage(st, cursor); err != nil || last != cursor {
				continue
			}
			if _, err := stream.CloseAndRecv(); err != nil {
				return err
			}
			return errDrained
		case <-ctx.Done():
			return ctx.Err()
		case <-stream.Context().Done():
			// The stream broke while idle (the peer restarted, say): end
			// the session now, so that the next one starts at once.
			return stream.Context().Err()
		case <-written:
		}
	}
}
