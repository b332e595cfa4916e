package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/replds/replds/cluster"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

// Replication page limits: a push or sync message carries at most this
// many nodes or bytes of data.
const (
	pageNodes = 8192
	pageBytes = 4 << 20
)

// peerSet reaches the peers through a transport and keeps one pusher per
// alive peer.
type peerSet struct {
	s   *Server
	log *slog.Logger
	tr  transport

	mu      sync.Mutex
	pushers map[string]*pusher // by member name
	closed  bool
}

func newPeerSet(s *Server, tr transport) *peerSet {
	return &peerSet{
		s:       s,
		log:     s.log.With("component", "replication"),
		tr:      tr,
		pushers: map[string]*pusher{},
	}
}

// start runs the loop that keeps one pusher per alive peer.
func (p *peerSet) start() {
	p.s.goFunc(p.reconcileLoop)
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

// close stops the pushers and breaks the connections. The goroutines are
// waited for by Server.Close.
func (p *peerSet) close() {
	p.mu.Lock()
	p.closed = true
	for _, pu := range p.pushers {
		pu.cancel()
	}
	p.mu.Unlock()
	p.tr.close()
}

// redial breaks every stream and connection to peers (see
// transport.reset), after an ACL change. Their users fail and retry on new
// ones, whose handshakes check the current ACLs.
func (p *peerSet) redial() { p.tr.reset() }

// randomPeer returns a random alive peer.
func (p *peerSet) randomPeer() (cluster.Member, peerClient, bool) {
	peers := alivePeers(p.s.mem)
	if len(peers) == 0 {
		return cluster.Member{}, nil, false
	}
	m := peers[rand.IntN(len(peers))]
	c, err := p.tr.peer(m.GRPCAddr)
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
	peer, err := pu.set.tr.peer(pu.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps, err := openPushSession(ctx, pu.set.s.store, peer)
	if err != nil {
		return err
	}
	for {
		// Taken before the read, so that no commit after it goes unseen.
		written := ps.st.Written()
		msg, more, err := ps.sendNext()
		if err != nil {
			return err
		}
		if msg != nil {
			pu.set.s.metrics.pushSent(pu.name, msg)
		}
		if more {
			continue
		}
		select {
		case <-pu.set.s.draining:
			// No write can come any more (Close waited for the Writer's
			// calls and refuses new ones), and every one up to the head
			// was sent: the peer's answer to the end of the stream says
			// it applied them all.
			if err := ps.finish(); err != nil {
				if errors.Is(err, errPushPending) {
					continue
				}
				return err
			}
			return errDrained
		case <-ctx.Done():
			return ctx.Err()
		case <-ps.stream.Context().Done():
			// The stream broke while idle (the peer restarted, say): end
			// the session now, so that the next one starts at once.
			return ps.stream.Context().Err()
		case <-written:
		}
	}
}

// pushSession is one push stream of a store's own writes to a peer: it
// starts at the head of the store's log and follows one origin. A new
// incarnation ends it (errNewIncarnation): the store's Reincarnate wakes
// idle pushers as a commit does (store.Written), and the pusher starts a
// session on the new origin. One goroutine uses it.
type pushSession struct {
	st     *store.Store
	stream pushStream
	origin uint64
	cursor uint64 // the last seq of origin sent
}

// errPushPending is finish's answer while writes remain to be sent.
var errPushPending = errors.New("server: writes left to push")

// openPushSession opens a push stream to peer, starting after what st
// holds now.
func openPushSession(ctx context.Context, st *store.Store, peer peerClient) (*pushSession, error) {
	origin := st.Origin()
	cursor := st.Vector()[origin]
	stream, err := peer.push(ctx)
	if err != nil {
		return nil, err
	}
	return &pushSession{st: st, stream: stream, origin: origin, cursor: cursor}, nil
}

// sendNext sends the next page of own writes after the cursor, if there
// is one, and reports it and whether more are waiting.
func (ps *pushSession) sendNext() (*repldspb.PushRequest, bool, error) {
	if ps.st.Origin() != ps.origin {
		return nil, false, errNewIncarnation
	}
	msg, next, more, err := pushPage(ps.st, ps.origin, ps.cursor)
	if err != nil || msg == nil {
		return nil, more, err
	}
	if err := ps.stream.Send(msg); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = ps.stream.CloseAndRecv()
		}
		return nil, false, err
	}
	ps.cursor = next
	return msg, more, nil
}

// finish ends the stream once every write was sent, and waits for the
// peer's answer that it applied them; errPushPending if some are left.
func (ps *pushSession) finish() error {
	if _, last, _, err := pushPage(ps.st, ps.origin, ps.cursor); err != nil || last != ps.cursor {
		return errPushPending
	}
	_, err := ps.stream.CloseAndRecv()
	return err
}

// errNewIncarnation ends a push session whose store took a new origin.
var errNewIncarnation = errors.New("server: new incarnation")
