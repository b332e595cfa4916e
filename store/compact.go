package store

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/boltcompact"
	"github.com/replds/replds/nodepath"
)

// DefaultEraseInterval is how long data a commit deleted or overwrote may
// stay in the file before the store compacts it away (Config.EraseInterval).
const DefaultEraseInterval = time.Hour

// eraser schedules the compactions that remove deleted and overwritten
// data from the file (see Compact). Its timer is armed by the first commit
// that freed node data since the last compaction and fires EraseInterval
// later; the committer waits on it between two commits.
type eraser struct {
	interval time.Duration
	// timer exists, stopped until armed, when interval is positive.
	timer *time.Timer
	// mu guards armed (set while freed data waits for a compaction) and
	// the timer's Reset and Stop.
	mu    sync.Mutex
	armed bool
	// reqs carries Compact calls to the committer.
	reqs chan chan compactResult
	// hook, when set by a test, runs at each step of a swap.
	hook atomic.Pointer[func(boltcompact.Step) error]
	// count counts successful compactions.
	count atomic.Uint64
	// run is the compaction in progress, nil if none. Committer only.
	run *compaction
}

func newEraser(interval time.Duration) *eraser {
	e := &eraser{interval: interval, reqs: make(chan chan compactResult)}
	if interval > 0 {
		e.timer = time.NewTimer(interval)
		e.timer.Stop()
	}
	return e
}

// due returns the channel on which the timer fires; nil (never ready)
// without one.
func (e *eraser) due() <-chan time.Time {
	if e.timer == nil {
		return nil
	}
	return e.timer.C
}

// freed records that a commit freed node data: a compaction follows
// within the interval.
func (e *eraser) freed() {
	if e.timer == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.armed {
		e.armed = true
		e.timer.Reset(e.interval)
	}
}

// erased records a compaction: nothing freed waits any more.
func (e *eraser) erased() {
	if e.timer == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.armed = false
	e.timer.Stop()
}

// CompactStats describes one compaction.
type CompactStats struct {
	// Before and After are the file's sizes.
	Before, After int64
	// Took is how long the compaction took, from its snapshot to the swap.
	Took time.Duration
	// Stall is how long of it the committer was held, bringing the copy up
	// to date and swapping the files: how long writes waited. Reads never
	// wait.
	Stall time.Duration
	// CaughtUp is the number of paths committed during the copy and
	// brought up to date in it; FullCopy reports that a commit the
	// compaction could not follow made it copy the file again, with the
	// committer held.
	CaughtUp int
	FullCopy bool
}

type compactResult struct {
	stats CompactStats
	err   error
}

// compaction is the state of a compaction in progress, the committer's.
type compaction struct {
	why   string
	start time.Time
	// snapID is the transaction id of the snapshot being copied; commits
	// the number of commits recorded since, dirty the paths they changed.
	// other reports a commit that changed nodes without telling which.
	snapID  int
	commits int
	dirty   map[string]struct{}
	other   bool
	// waiters get the result; queued and again ask for another
	// compaction once this one ends (their deletions may postdate its
	// snapshot).
	waiters []chan compactResult
	queued  []chan compactResult
	again   bool
	// copied receives the copy of the snapshot (buffered).
	copied chan copyDone
}

type copyDone struct {
	c   *boltcompact.Copy
	err error
}

// copied returns the channel on which the copy in progress ends, nil if
// none.
func (e *eraser) copied() <-chan copyDone {
	if e.run == nil {
		return nil
	}
	return e.run.copied
}

// Compact rewrites the store file with only its live keys, so that the data
// of deleted and overwritten nodes, which bbolt leaves in freed pages, is
// no longer in it (see package boltcompact), and returns once the new file
// replaced the old one. Every node deleted or overwritten before the call
// is gone from the file then.
//
// The live keys are copied from a snapshot while commits go on; then the
// committer stops, brings the copy up to date with the paths committed
// meanwhile, and swaps the files: writes wait only for that last part
// (CompactStats.Stall), reads never. The store also compacts by itself
// EraseInterval after a commit first freed node data. If the compaction
// fails before the new file replaced the old one, the store goes on with
// the old file and Compact returns the error.
func (s *Store) Compact(ctx context.Context) (CompactStats, error) {
	answer := make(chan compactResult, 1)
	select {
	case s.erase.reqs <- answer:
	case <-s.closing:
		return CompactStats{}, ErrClosed
	case <-ctx.Done():
		return CompactStats{}, ctx.Err()
	}
	r := <-answer
	return r.stats, r.err
}

// CompactCount returns the number of compactions since Open.
func (s *Store) CompactCount() uint64 { return s.erase.count.Load() }

// compactOptions returns the options of a swap of the store file.
func (s *Store) compactOptions() boltcompact.Options {
	opts := boltcompact.Options{Open: boltOptions(s.cfg), Cancel: s.closing}
	if h := s.erase.hook.Load(); h != nil {
		opts.Hook = *h
	}
	return opts
}

// startCompaction runs on the committer: it starts copying a snapshot of
// the file, or, if a compaction is running, has another follow it.
func (s *Store) startCompaction(why string, waiters ...chan compactResult) {
	if r := s.erase.run; r != nil {
		r.queued = append(r.queued, waiters...)
		r.again = r.again || len(waiters) == 0
		return
	}
	// This compaction takes what was freed so far; commits that free
	// data from now on arm the timer again.
	s.erase.erased()
	snap, err := s.db.Begin(false)
	if err != nil {
		s.erase.freed()
		s.answerCompaction(waiters, compactResult{err: fmt.Errorf("store: compact: %w", err)})
		return
	}
	r := &compaction{
		why: why, start: time.Now(), snapID: snap.ID(),
		dirty: make(map[string]struct{}), waiters: waiters,
		copied: make(chan copyDone, 1),
	}
	s.erase.run = r
	opts := s.compactOptions()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c, err := boltcompact.Begin(snap, s.cfg.Path, opts)
		_ = snap.Rollback()
		r.copied <- copyDone{c: c, err: err}
	}()
}

// noteCommit records, on the committer, a commit of group g: the paths a
// running compaction must bring up to date, and the freed data that arms
// the timer.
func (s *Store) noteCommit(g *group) {
	if g.freed {
		s.erase.freed()
	}
	if r := s.erase.run; r != nil {
		r.commits++
		g.changes.Walk(func(path string, _ any) bool {
			r.dirty[path] = struct{}{}
			return false
		})
	}
}

// noteOtherCommit records, on the committer, a commit made outside
// commitTx. nodes reports that it changed the nodes or log buckets: a
// running compaction cannot follow that and copies the file again. Every
// write transaction must be recorded by one of the two; one that is not
// is caught by its transaction id and handled as nodes.
func (s *Store) noteOtherCommit(nodes bool) {
	if r := s.erase.run; r != nil {
		r.commits++
		r.other = r.other || nodes
	}
}

// finishCompaction runs on the committer once the copy ended: it brings
// the copy up to date and swaps it in, answers the waiters and starts the
// compaction asked for meanwhile.
func (s *Store) finishCompaction(d copyDone) {
	r := s.erase.run
	s.erase.run = nil
	res := s.installCopy(r, d)
	if res.err != nil {
		// Still on the old file, with the freed data in it: try again
		// after an interval.
		s.erase.freed()
	}
	if len(r.waiters) == 0 && res.err != nil {
		s.log.Error("compaction failed", "reason", r.why, "err", res.err)
	}
	s.answerCompaction(r.waiters, res)
	if len(r.queued) > 0 || r.again {
		s.startCompaction("requested during a compaction", r.queued...)
	}
}

func (s *Store) answerCompaction(waiters []chan compactResult, res compactResult) {
	for _, w := range waiters {
		w <- res
	}
}

// installCopy brings the copy up to date (or copies again, see
// noteOtherCommit) and swaps it in.
func (s *Store) installCopy(r *compaction, d copyDone) compactResult {
	if d.err != nil {
		return compactResult{err: fmt.Errorf("store: compact: %w", d.err)}
	}
	stallStart := time.Now()
	st := CompactStats{CaughtUp: len(r.dirty)}
	cur, err := s.db.Begin(false)
	if err != nil {
		d.c.Abort()
		return compactResult{err: fmt.Errorf("store: compact: %w", err)}
	}
	c := d.c
	freed := false
	if r.other || cur.ID() != r.snapID+r.commits {
		c.Abort()
		st.FullCopy, st.CaughtUp = true, 0
		c, err = boltcompact.Begin(cur, s.cfg.Path, s.compactOptions())
	} else {
		freed, err = catchUp(c.DB(), cur, r.dirty)
		if err != nil {
			c.Abort()
		}
	}
	// The copy holds what cur sees: the old file's readers are others.
	_ = cur.Rollback()
	if err != nil {
		return compactResult{err: fmt.Errorf("store: compact: %w", err)}
	}
	db, res, err := c.Install()
	if db == nil {
		return compactResult{err: fmt.Errorf("store: compact: %w", err)}
	}
	s.dbMu.Lock()
	old := s.db
	s.db = db
	s.dbMu.Unlock()
	// Reads that began on the old file (a snapshot may last) finish
	// there; the close waits for them, not the committer.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := old.Close(); err != nil {
			s.log.Warn("close compacted file", "err", err)
		}
	}()
	if freed {
		// The catch-up replaced data of the snapshot in the new file.
		s.erase.freed()
	}
	s.erase.count.Add(1)
	st.Before, st.After = res.Before, res.After
	st.Took, st.Stall = time.Since(r.start), time.Since(stallStart)
	if err != nil {
		// The new file is in place and in use; only its directory entry
		// may not be durable yet.
		return compactResult{stats: st, err: fmt.Errorf("store: compact: %w", err)}
	}
	s.log.Info("store compacted", "reason", r.why, "before", st.Before, "after", st.After,
		"took", st.Took, "stall", st.Stall, "caught_up", st.CaughtUp, "full_copy", st.FullCopy)
	return compactResult{stats: st}
}

// catchUp brings dst, a copy of an earlier snapshot, to the state cur
// sees, given the paths committed since: their nodes and log entries,
// and every other bucket (vector, state: small) whole. It reports
// whether it replaced node data of the snapshot.
func catchUp(dst *bolt.DB, cur *bolt.Tx, dirty map[string]struct{}) (freed bool, err error) {
	err = dst.Update(func(tx *bolt.Tx) error {
		nodes, logb := tx.Bucket(bucketNodes), tx.Bucket(bucketLog)
		curNodes := cur.Bucket(bucketNodes)
		for _, path := range slices.Sorted(maps.Keys(dirty)) {
			k := []byte(path)
			if old := nodes.Get(k); old != nil {
				m, _, err := decodeNode(old)
				if err != nil {
					return fmt.Errorf("node %s: %w", nodepath.Quote(path), err)
				}
				if err := logb.Delete(logKey(m.Origin, m.Seq)); err != nil {
					return err
				}
				freed = freed || (!m.Deleted && m.Size > 0)
			}
			v := curNodes.Get(k)
			if v == nil {
				if err := nodes.Delete(k); err != nil {
					return err
				}
				continue
			}
			m, _, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("node %s: %w", nodepath.Quote(path), err)
			}
			// v stays valid: cur is open until dst commits.
			if err := nodes.Put(k, v); err != nil {
				return err
			}
			if err := logb.Put(logKey(m.Origin, m.Seq), k); err != nil {
				return err
			}
		}
		return copySmallBuckets(tx, cur)
	})
	return freed, err
}

// copySmallBuckets replaces every top-level bucket of tx but nodes and
// log by cur's.
func copySmallBuckets(tx, cur *bolt.Tx) error {
	small := func(name []byte) bool {
		return !bytes.Equal(name, bucketNodes) && !bytes.Equal(name, bucketLog)
	}
	var drop [][]byte
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if small(name) {
			drop = append(drop, bytes.Clone(name))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, name := range drop {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
	}
	return cur.ForEach(func(name []byte, b *bolt.Bucket) error {
		if !small(name) {
			return nil
		}
		nb, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("bucket %s: nested bucket %q not supported", name, k)
			}
			return nb.Put(k, v)
		})
	})
}

// stopCompaction runs on the committer as the store closes: the copy in
// progress stops (its Cancel is the store's closing) and is dropped.
func (s *Store) stopCompaction() {
	r := s.erase.run
	if r == nil {
		return
	}
	s.erase.run = nil
	if d := <-r.copied; d.c != nil {
		d.c.Abort()
	}
	s.answerCompaction(append(r.waiters, r.queued...), compactResult{err: ErrClosed})
}

// boltOptions returns the options the store file is opened with.
func boltOptions(cfg Config) *bolt.Options {
	return &bolt.Options{
		Timeout:         openTimeout,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		NoSync:          cfg.NoSync,
		InitialMmapSize: initialMmapSize(),
	}
}
