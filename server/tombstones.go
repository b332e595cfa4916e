package server

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replds/replds/lww"
	"github.com/replds/replds/store"
)

// collectInterval is the period of tombstone collection (collectLoop).
const collectInterval = 5 * time.Minute

// tombstoneMetrics are the collectors of tombstone collection.
type tombstoneMetrics struct {
	collected prometheus.Counter
}

// newTombstoneMetrics registers the tombstone collectors of s.
func newTombstoneMetrics(f factory, s *Server) tombstoneMetrics {
	f.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "replds_tombstones_buried_total",
		Help: "Live nodes taken for deleted because a collected tombstone may have deleted them (a member came back with older data): each a resurrection refused.",
	}, func() float64 { return float64(s.store.Buried()) }))
	f.gaugeFunc("replds_tombstone_floor_timestamp_seconds",
		"Wall clock part of the newest tombstone collected (0: none yet): the collection floor.",
		func() float64 { return float64(lww.WallTime(s.store.Floor().Version).UnixMilli()) / 1000 })
	return tombstoneMetrics{
		collected: f.counter("replds_tombstones_collected_total", "Tombstones collected (removed once every member had them and the grace passed)."),
	}
}

// peerVectors holds the last vector each peer sent at the end of a sync
// round (SyncResponse.vector), by member name: what collectTombstones
// knows each replica holds. It lives in memory only: after a restart, no
// collection until every member has answered a round.
type peerVectors struct {
	mu sync.Mutex
	m  map[string]store.Vector // guarded by mu
}

// record keeps v as what member name holds; "" (an unnamed round) is
// ignored.
func (p *peerVectors) record(name string, v store.Vector) {
	if name == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]store.Vector{}
	}
	p.m[name] = v
}

// get returns the vector recorded for name.
func (p *peerVectors) get(name string) (store.Vector, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[name]
	return v, ok
}

// collectLoop collects tombstones every collectInterval (with jitter).
func (s *Server) collectLoop() {
	log := s.log.With("component", "collect")
	for {
		d := collectInterval/2 + rand.N(collectInterval)
		select {
		case <-s.done:
			return
		case <-time.After(d):
		}
		var members []string
		for _, m := range s.mem.Members() {
			if !m.Self {
				members = append(members, m.Name)
			}
		}
		n, err := s.collectTombstones(s.ctx, members)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			log.Warn("tombstone collection failed", "err", err)
			continue
		}
		s.metrics.tombs.collected.Add(float64(n))
		if n > 0 {
			log.Info("tombstones collected", "count", n, "floor_version", s.store.Floor().Version)
		}
	}
}

// collectTombstones removes the tombstones that every replica has and
// that are older than Config.TombstoneGrace, and returns how many. members
// are the other members this server knows of, alive or not (not yet
// reaped): each must have sent its vector in a sync round (peerVectors),
// or nothing is collected. A tombstone goes when its write is covered by
// our vector and by every member's, and this server's vector covers each
// member's (so that no write of theirs older than the tombstones is still
// on its way here: Apply takes for deleted a live node at or below the
// collection floor at a path it does not hold). A member that comes back
// with older data, restored from a backup or away longer than the grace,
// cannot resurrect a deleted node: see store.Floor and Store.Bury.
func (s *Server) collectTombstones(ctx context.Context, members []string) (int, error) {
	mine := s.store.Vector()
	covered := mine.Clone()
	for _, name := range members {
		v, ok := s.peerVectors.get(name)
		if !ok {
			return 0, nil
		}
		for o, seq := range v {
			if mine[o] < seq {
				return 0, nil // their writes are still on their way here
			}
		}
		for o := range covered {
			covered[o] = min(covered[o], v[o])
		}
	}
	before := store.VersionAt(s.now().Add(-s.cfg.TombstoneGrace))
	total := 0
	for {
		n, more, err := s.store.Collect(ctx, before, covered)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}
