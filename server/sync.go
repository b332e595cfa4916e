package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	repldspb "replds/proto"
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
		s.advertiseReadiness()
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
	req.PushedSince = vectorToProto(s.inbound.claims(s.now())).Entries
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

// checkIncarnation takes a new incarnation when a peer has seen up to seq
// seen of origin, this server's own origin, and the server holds less: it
// was restored from a backup or lost its last writes. Its next writes would
// otherwise reuse seqs its peers already cover, and never reach them; its
// old writes, of a foreign origin from now on, come back by sync. Writes
// it accepts before a round with such a peer still reuse those seqs: peers
// get them by hash-tree repair, but a Watch client whose token already
// passed them does not (the simulation keeps a restored server from
// taking writes until it has synced with every peer).
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
	// Pushers follow the origin's seqs: restart them on the new one.
	s.peers.redial()
}
