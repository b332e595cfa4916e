package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/wire"
)

// syncLoop runs a digest sync round with a random alive peer every
// SyncInterval (with jitter, so servers do not beat in step).
func (s *Server) syncLoop() {
	log := s.log.With("component", "sync")
	failures := 0
	for {
		d := s.cfg.SyncInterval/2 + rand.N(s.cfg.SyncInterval)
		select {
		case <-s.done:
			return
		case <-time.After(d):
		}
		m, peer, ok := s.peers.randomPeer()
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
		round := &syncRound{}
		applied, err := s.syncWith(ctx, peer, round)
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.metrics.syncDone(m.Name, round, err)
			failures++
			if failures == 3 {
				log.Warn("sync failing", "peer", m.Name, "err", err)
			} else {
				log.Debug("sync failed", "peer", m.Name, "err", err)
			}
			continue
		}
		s.metrics.syncDone(m.Name, round, nil)
		s.setCaughtUp()
		if failures >= 3 {
			log.Info("sync recovered", "peer", m.Name)
		}
		failures = 0
		if applied > 0 {
			log.Info("synced", "peer", m.Name, "nodes", applied)
		}
	}
}

// syncWith runs one digest sync round against a peer: it sends our vector
// and hash root, applies what the peer sends back, and starts a hash-tree
// repair when the peer says the vectors match but the roots do not. It
// records what the round exchanged in r (nil: nowhere).
func (s *Server) syncWith(ctx context.Context, peer peerClient, r *syncRound) (int, error) {
	req := syncRequest(s.store)
	req.PushedSince = wire.VectorToProto(s.inbound.claims(s.now())).Entries
	r.sent(req)
	applied := 0
	err := peer.sync(ctx, req, func(msg *repldspb.SyncResponse) error {
		r.received(msg)
		if msg.Repair {
			log := s.log.With("component", "repair")
			log.Info("repair started")
			buckets, n, err := repairFrom(ctx, s.store, peer)
			s.metrics.repaired(n, err)
			applied += n
			if err != nil {
				return fmt.Errorf("repair: %w", err)
			}
			log.Info("repair finished", "buckets", buckets, "nodes", n)
			return nil
		}
		start := time.Now()
		if o := s.store.Origin(); msg.Origin == o {
			// The peer holds writes of our own origin that we lack.
			seen := msg.Upto
			for _, n := range msg.Nodes {
				seen = max(seen, n.Seq)
			}
			s.checkIncarnation(ctx, o, seen)
		}
		n, err := applySyncResponse(ctx, s.store, msg)
		s.metrics.committed("apply", start, err)
		applied += n
		return err
	})
	return applied, err
}

// startCheckTimeout bounds the start check (startCheck): how long a
// starting server waits for its configured peers' answers before it takes
// writes anyway.
const startCheckTimeout = 3 * time.Second

// startCheck runs once, at Start: it asks the configured peers what they
// have seen of this server's own writes (checkPeersSeen), then lets the
// Writer write (s.checked). A server restored from an older copy of its
// data thus takes a new incarnation before its first write, instead of
// reusing seqs that its peers, and the resume tokens of Watch clients,
// already cover. A server with no peers configured skips it.
func (s *Server) startCheck() {
	defer close(s.checked)
	if len(s.cfg.Peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, startCheckTimeout)
	defer cancel()
	var peers []peerClient
	for _, addr := range s.cfg.Peers {
		if c, err := s.peers.tr.peer(addr); err == nil {
			peers = append(peers, c)
		}
	}
	answered := s.checkPeersSeen(ctx, peers)
	s.log.Debug("start check done", "peers", len(s.cfg.Peers), "answered", answered)
}

// checkPeersSeen asks every peer at once (Hello) how far it has seen this
// server's origin, until ctx is done, and takes a new incarnation
// (checkIncarnation) if one has seen more than the server holds. It
// returns how many peers answered. A peer that does not answer is passed
// over: if it saw more, the first sync round with it finds out
// (checkIncarnation), and writes taken until then reuse seqs.
func (s *Server) checkPeersSeen(ctx context.Context, peers []peerClient) int {
	origin := s.store.Origin()
	seen := make([]uint64, len(peers))
	ok := make([]bool, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			resp, err := p.hello(ctx, &repldspb.HelloRequest{Origin: origin})
			if err == nil {
				seen[i], ok[i] = resp.Seen, true
			}
		})
	}
	wg.Wait()
	answered := 0
	var most uint64
	for i := range peers {
		if ok[i] {
			answered++
			most = max(most, seen[i])
		}
	}
	// Taking the new origin is a local commit: ctx bounded only the asking.
	s.checkIncarnation(context.WithoutCancel(ctx), origin, most)
	return answered
}

// checkIncarnation takes a new incarnation when a peer has seen up to seq
// seen of origin, this server's own origin, and the server holds less: it
// was restored from a backup or lost its last writes. Its next writes would
// otherwise reuse seqs its peers already cover, and never reach them; its
// old writes, of a foreign origin from now on, come back by sync. The
// start check (startCheck) asks the peers before the first write; this
// check in every sync round catches a peer that did not answer it.
func (s *Server) checkIncarnation(ctx context.Context, origin, seen uint64) {
	s.incMu.Lock()
	defer s.incMu.Unlock()
	if s.store.Origin() != origin || seen <= s.store.Vector()[origin] {
		return
	}
	old, cur, err := s.store.Reincarnate(ctx)
	if err != nil {
		s.log.Error("new incarnation failed", "err", err)
		return
	}
	s.log.Warn("peers have seen more of this server's writes than it holds (restored from an older state?): new incarnation",
		"old_origin", fmt.Sprintf("%016x", old), "origin", fmt.Sprintf("%016x", cur), "held", s.store.Vector()[old], "seen", seen)
	// The pushers wake on the new origin (Reincarnate fires store.Written)
	// and restart their sessions on it (errNewIncarnation).
}
