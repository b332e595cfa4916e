package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCollected: a consumer's vector is below the collection floor: it may
// have missed deletes whose tombstones were collected, and must start
// again from nothing (a reset), not resume.
var ErrCollected = errors.New("store: resume point below the tombstone collection floor")

// maxCollect bounds the tombstones one Collect transaction removes, so
// that a first collection of a large backlog does not hold the committer
// for long: the caller calls again while Collect reports more.
const maxCollect = 10000

// Floor is what tombstone collection removed from a store (see Collect).
type Floor struct {
	// Vector holds, per origin, the highest seq of a collected tombstone.
	// A consumer whose vector is below it for some origin may have missed
	// a delete: it must replay in full rather than resume.
	Vector Vector
	// Version is the highest version of a collected tombstone. A live node
	// at or below it at a path the store does not hold may be one that a
	// collected tombstone deleted: Apply takes it for deleted.
	Version uint64
}

// Below reports whether a consumer holding v may have missed a collected
// delete: v is below the floor for some origin.
func (f Floor) Below(v Vector) bool {
	for o, seq := range f.Vector {
		if v[o] < seq {
			return true
		}
	}
	return false
}

// VersionAt returns the version a write stamped at wall clock t would
// carry (its counter at zero): Collect's bound for tombstones older than t.
func VersionAt(t time.Time) uint64 { return hlc(t) }

// collectRequest is a Collect (or, with raise, a RaiseFloor) call
// waiting for the committer.
type collectRequest struct {
	before  uint64
	covered Vector
	raise   *Floor
	done    chan collectResult
}

type collectResult struct {
	n    int
	more bool
	err  error
}

// Collect removes tombstones that every replica has and no reader needs:
// those whose version is below before and whose (origin, seq) covered
// covers (the caller passes the entrywise minimum of every replica's
// vector). Each goes with its log entry, from the file and from memory, in
// one transaction that also raises the collection floor (see Floor) and
// persists it. It removes at most maxCollect tombstones a call and reports
// whether more are waiting. It runs on the committer, between commits; it
// publishes no event: subscribers hold the tombstones they were sent.
func (s *Store) Collect(ctx context.Context, before uint64, covered Vector) (n int, more bool, err error) {
	r := &collectRequest{before: before, covered: covered.Clone(), done: make(chan collectResult, 1)}
	select {
	case s.collects <- r:
		res := <-r.done
		return res.n, res.more, res.err
	case <-s.closing:
		return 0, false, ErrClosed
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

// RaiseFloor raises the collection floor to f where f is higher, durably,
// between two commits. A server calls it before its vector passes writes
// whose tombstones a peer collected (a sync answer's floor_seq): it never
// got those deletes, so its readers below f must reset as if it had
// collected them itself, and Apply must refuse what they deleted.
func (s *Store) RaiseFloor(ctx context.Context, f Floor) error {
	r := &collectRequest{raise: &Floor{Vector: f.Vector.Clone(), Version: f.Version}, done: make(chan collectResult, 1)}
	select {
	case s.collects <- r:
		return (<-r.done).err
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raiseFloor runs on the committer goroutine (see RaiseFloor).
func (s *Store) raiseFloor(f *Floor) collectResult {
	floor := Floor{Vector: s.floor.Vector.Clone(), Version: max(s.floor.Version, f.Version)}
	changed := floor.Version != s.floor.Version
	for o, seq := range f.Vector {
		if seq > floor.Vector[o] {
			floor.Vector[o] = seq
			changed = true
		}
	}
	if !changed {
		return collectResult{}
	}
	if err := s.update(false, func(tx *bolt.Tx) error { return putFloor(tx, floor) }); err != nil {
		return collectResult{err: err}
	}
	s.setFloor(floor)
	return collectResult{}
}

// update runs fn in a write transaction and commits it (see commit),
// rolling back if fn fails, and records it for a running compaction
// (noteOtherCommit; nodes says fn changes the nodes or log buckets, which
// makes the compaction copy again, and the state bucket alone does not).
// It runs on the committer goroutine.
func (s *Store) update(nodes bool, fn func(tx *bolt.Tx) error) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := s.commit(tx); err != nil {
		return err
	}
	s.noteOtherCommit(nodes)
	return nil
}

// setFloor installs a new floor in memory and tells the feeds.
func (s *Store) setFloor(f Floor) {
	s.mu.Lock()
	s.floor = f
	s.mu.Unlock()
	s.floorGen.Add(1)
}

// Buried returns how many live nodes Apply and Bury took for deleted
// since Open (see Floor): each a deleted node that came back.
func (s *Store) Buried() uint64 { return s.buried.Load() }

// Floor returns the store's collection floor.
func (s *Store) Floor() Floor {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Floor{Vector: s.floor.Vector.Clone(), Version: s.floor.Version}
}

// collect runs on the committer goroutine (see Collect), which reads
// memory without locking.
func (s *Store) collect(r *collectRequest) collectResult {
	if r.raise != nil {
		return s.raiseFloor(r.raise)
	}
	type victim struct {
		path string
		m    Meta
	}
	var victims []victim
	more := false
	s.tree.Walk(func(path string, v any) bool {
		m := v.(*entry).meta()
		if m.Deleted && m.Version < r.before && r.covered.Covers(m.Origin, m.Seq) {
			if len(victims) == maxCollect {
				more = true
				return true
			}
			victims = append(victims, victim{path, m})
		}
		return false
	})
	if len(victims) == 0 {
		return collectResult{}
	}
	floor := Floor{Vector: s.floor.Vector.Clone(), Version: s.floor.Version}
	for _, v := range victims {
		if v.m.Seq > floor.Vector[v.m.Origin] {
			floor.Vector[v.m.Origin] = v.m.Seq
		}
		floor.Version = max(floor.Version, v.m.Version)
	}
	err := s.update(true, func(tx *bolt.Tx) error {
		nodes, logb := tx.Bucket(bucketNodes), tx.Bucket(bucketLog)
		for _, v := range victims {
			if err := nodes.Delete([]byte(v.path)); err != nil {
				return fmt.Errorf("store: delete node: %w", err)
			}
			if err := logb.Delete(logKey(v.m.Origin, v.m.Seq)); err != nil {
				return fmt.Errorf("store: delete log entry: %w", err)
			}
		}
		return putFloor(tx, floor)
	})
	if err != nil {
		return collectResult{err: err}
	}
	s.mu.Lock()
	for _, v := range victims {
		s.forget(v.path)
	}
	s.mu.Unlock()
	s.setFloor(floor)
	return collectResult{n: len(victims), more: more}
}

// forget removes path from memory: radix tree, hash tree, stats and
// bucket index; its entry goes back to the free list for newEntry. The
// caller holds mu for writing.
func (s *Store) forget(path string) {
	v, ok := s.tree.Delete(path)
	if !ok {
		return
	}
	e := v.(*entry)
	m := e.meta()
	s.hash.toggle(int(e.bucket), nodeHash(path, m))
	s.stats.remove(m)
	b := int(e.bucket)
	if i := slices.Index(s.buckets[b], path); i >= 0 {
		last := len(s.buckets[b]) - 1
		s.buckets[b][i] = s.buckets[b][last]
		s.buckets[b][last] = ""
		s.buckets[b] = s.buckets[b][:last]
	}
	*e = entry{}
	s.free = append(s.free, e)
}

// Floor encoding in the state bucket: floor -> version(8), then
// origin(8) seq(8) per origin.
func putFloor(tx *bolt.Tx, f Floor) error {
	v := make([]byte, 8, 8+16*len(f.Vector))
	binary.BigEndian.PutUint64(v, f.Version)
	for _, o := range sortedOrigins(f.Vector) {
		v = binary.BigEndian.AppendUint64(v, o)
		v = binary.BigEndian.AppendUint64(v, f.Vector[o])
	}
	if err := tx.Bucket(bucketState).Put(keyFloor, v); err != nil {
		return fmt.Errorf("store: put floor: %w", err)
	}
	return nil
}

// readFloor reads the floor from the state bucket (zero when none).
func readFloor(tx *bolt.Tx) (Floor, error) {
	f := Floor{Vector: Vector{}}
	v := tx.Bucket(bucketState).Get(keyFloor)
	if v == nil {
		return f, nil
	}
	if len(v) < 8 || (len(v)-8)%16 != 0 {
		return Floor{}, fmt.Errorf("bad floor of %d bytes", len(v))
	}
	f.Version = binary.BigEndian.Uint64(v)
	for p := v[8:]; len(p) > 0; p = p[16:] {
		f.Vector[binary.BigEndian.Uint64(p)] = binary.BigEndian.Uint64(p[8:])
	}
	return f, nil
}

func sortedOrigins(v Vector) []uint64 {
	out := make([]uint64, 0, len(v))
	for o := range v {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// buryRequest is a Bury call's part of a request.
type buryRequest struct {
	floor uint64
}

// Bury takes for deleted the live nodes among nodes that still hold the
// store's current version of their path and whose version is at most
// floor: a peer whose collection floor is floor lacks them, so a
// collected tombstone deleted them there (see Floor). Each gets a
// tombstone one version above it, stamped with this store's origin and
// next seq, which replicates as any local delete. A hash-tree repair
// calls it for the nodes of the differing buckets that the peer lacks. It
// returns how many it buried, once durable.
func (s *Store) Bury(ctx context.Context, nodes []Node, floor uint64) (int, error) {
	if s.closed() {
		return 0, ErrClosed
	}
	if len(nodes) == 0 || floor == 0 {
		return 0, nil
	}
	own := make([]Node, len(nodes))
	for i, n := range nodes {
		own[i] = Node{Path: n.Path, Meta: n.Meta}
	}
	r := s.submit(ctx, &request{ctx: ctx, apply: true, nodes: own, bury: &buryRequest{floor: floor}, done: make(chan result, 1)})
	if r.stamped {
		s.written.fire()
	}
	return r.n, r.err
}

// bury processes a Bury request.
func (b *batch) bury(nodes []Node, floor uint64) int {
	for _, n := range nodes {
		cur, ok := b.get(n.Path)
		if !ok || cur.Deleted || cur.Version != n.Version || cur.Origin != n.Origin || n.Version > floor {
			continue
		}
		b.buryNode(n.Path, n.Version)
	}
	return b.stampBuried()
}

// buryNode records a tombstone for path one version above version, to be
// stamped with the store's origin by stampBuried.
func (b *batch) buryNode(path string, version uint64) {
	b.set(path, Meta{Version: version + 1, Deleted: true}, nil)
	b.buried = true
}

// stampBuried gives the tombstones of buryNode still standing the store's
// origin and next seqs, and returns the number of changes.
func (b *batch) stampBuried() int {
	if !b.buried {
		return len(b.order)
	}
	s := b.g.s
	seq := b.vec(s.origin)
	stamped := false
	for _, c := range b.order {
		if c.meta.Deleted && c.meta.Origin == 0 {
			seq++
			c.meta.Origin, c.meta.Seq = s.origin, seq
			stamped = true
			b.g.buried++
		}
	}
	if stamped {
		b.setVec(s.origin, seq)
	} else {
		b.buried = false
	}
	return len(b.order)
}
