package server

import (
	"context"
	"errors"
	"slices"
	"strconv"

	repldspb "github.com/replds/replds/proto"
)

// The simulation's network: a transport whose calls go straight to the
// other simulated server's handler functions (serveSync, receivePush,
// answerTree, answerBuckets), step by step and seeded. Push messages wait
// in flight until the simulation delivers them, in any order, maybe twice;
// a dropped one breaks its stream, as a lost packet breaks a TCP stream.
// A partition or a crash fails new calls and breaks the streams across it.

// errSimNetwork is the error of a call the simulated network failed.
var errSimNetwork = errors.New("sim: network failure")

// simTransport is server from's transport in the simulation.
type simTransport struct {
	sim  *sim
	from int
}

func (t *simTransport) peer(addr string) (peerClient, error) {
	to, err := strconv.Atoi(addr)
	if err != nil {
		return nil, err
	}
	return &simPeer{sim: t.sim, from: t.from, to: to}, nil
}

// reset breaks the push streams from server from, as an ACL change does.
func (t *simTransport) reset() {
	for _, ps := range slices.Clone(t.sim.streams) {
		if ps.from == t.from {
			ps.cut()
		}
	}
}

func (t *simTransport) close() { t.reset() }

// simPeer is server to as server from reaches it. lossy lets sync answers
// be cut short.
type simPeer struct {
	sim      *sim
	from, to int
	lossy    bool
}

func (p *simPeer) hello(_ context.Context, req *repldspb.HelloRequest) (*repldspb.HelloResponse, error) {
	if !p.sim.reachable(p.from, p.to) {
		return nil, errSimNetwork
	}
	srv := p.sim.servers[p.to].srv
	return &repldspb.HelloResponse{Name: srv.Name(), Origin: srv.store.Origin(), Seen: srv.store.Vector()[req.Origin]}, nil
}

func (p *simPeer) push(ctx context.Context) (pushStream, error) {
	if !p.sim.reachable(p.from, p.to) {
		return nil, errSimNetwork
	}
	to := p.sim.servers[p.to].srv
	ctx, cancel := context.WithCancel(ctx)
	ps := &simPushStream{sim: p.sim, from: p.from, to: p.to, srv: to, in: to.inbound.open(), ctx: ctx, cancel: cancel}
	p.sim.streams = append(p.sim.streams, ps)
	return ps, nil
}

func (p *simPeer) sync(ctx context.Context, req *repldspb.SyncRequest, recv func(*repldspb.SyncResponse) error) error {
	if !p.sim.reachable(p.from, p.to) {
		return errSimNetwork
	}
	var answer []*repldspb.SyncResponse
	if err := p.sim.servers[p.to].srv.serveSync(ctx, req, func(m *repldspb.SyncResponse) error {
		answer = append(answer, m)
		return nil
	}); err != nil {
		p.sim.t.Fatalf("answer sync %d->%d: %v", p.to, p.from, err)
	}
	cut := len(answer)
	if p.lossy && len(answer) > 0 && p.sim.rng.IntN(8) == 0 {
		cut = p.sim.rng.IntN(len(answer))
	}
	p.sim.tracef("sync %d<-%d: %d of %d messages", p.from, p.to, cut, len(answer))
	for _, m := range answer[:cut] {
		if err := recv(m); err != nil {
			return err
		}
	}
	if cut < len(answer) {
		return errSimNetwork
	}
	return nil
}

func (p *simPeer) tree(_ context.Context, req *repldspb.TreeRequest) (*repldspb.TreeResponse, error) {
	if !p.sim.reachable(p.from, p.to) {
		return nil, errSimNetwork
	}
	return answerTree(p.sim.servers[p.to].st, req)
}

func (p *simPeer) buckets(_ context.Context, req *repldspb.BucketRequest, recv func(*repldspb.SyncResponse) error) error {
	if !p.sim.reachable(p.from, p.to) {
		return errSimNetwork
	}
	return answerBuckets(p.sim.servers[p.to].st, req, recv)
}

// simPushStream is a push stream from server from to the instance srv of
// server to; in is its record in srv's inbound streams.
type simPushStream struct {
	sim      *sim
	from, to int
	srv      *Server
	in       *inStream
	ctx      context.Context
	cancel   context.CancelFunc
}

func (ps *simPushStream) broken() bool { return ps.ctx.Err() != nil }

// cut breaks the stream: the receiver stops counting on it, and what it
// has in flight is lost.
func (ps *simPushStream) cut() {
	if ps.broken() {
		return
	}
	ps.sim.tracef("push stream %d->%d breaks", ps.from, ps.to)
	ps.cancel()
	ps.srv.inbound.close(ps.in)
	ps.sim.streams = slices.DeleteFunc(ps.sim.streams, func(o *simPushStream) bool { return o == ps })
}

func (ps *simPushStream) Send(msg *repldspb.PushRequest) error {
	if ps.broken() {
		return ps.ctx.Err()
	}
	if !ps.sim.reachable(ps.from, ps.to) {
		ps.cut()
		return errSimNetwork
	}
	ps.sim.inflight = append(ps.sim.inflight, simMsg{ps, msg})
	if ps.sim.rng.IntN(10) == 0 {
		ps.sim.inflight = append(ps.sim.inflight, simMsg{ps, msg})
	}
	return nil
}

// CloseAndRecv ends the stream; it answers only when nothing it sent is
// still in flight (the simulation's servers never drain).
func (ps *simPushStream) CloseAndRecv() (*repldspb.PushResponse, error) {
	pending := slices.ContainsFunc(ps.sim.inflight, func(m simMsg) bool { return m.stream == ps })
	ps.cut()
	if pending {
		return nil, errSimNetwork
	}
	return &repldspb.PushResponse{}, nil
}

func (ps *simPushStream) Context() context.Context { return ps.ctx }

var (
	_ transport  = (*simTransport)(nil)
	_ peerClient = (*simPeer)(nil)
	_ pushStream = (*simPushStream)(nil)
)
