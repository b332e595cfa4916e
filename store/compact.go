package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"replds/boltcompact"
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
	// Took is how long the compaction held the committer: how long writes
	// stalled. Reads go on meanwhile.
	Took time.Duration
}

type compactResult struct {
	stats CompactStats
	err   error
}

// Compact rewrites the store file with only its live keys, so that the data
// of deleted and overwritten nodes, which bbolt leaves in freed pages, is
// no longer in it (see package boltcompact). It runs on the committer
// between two commits: writes wait for it to finish, reads go on. The
// store also compacts by itself EraseInterval after a commit first freed
// node data. If the swap fails before the new file replaced the old one,
// the store goes on with the old file and Compact returns the error.
func (s *Store) Compact(ctx context.Context) (CompactStats, error) {
	answer := make(chan compactResult, 1)
	select {
	case s.erase.reqs <- answer:
		r := <-answer
		return r.stats, r.err
	case <-s.closing:
		return CompactStats{}, ErrClosed
	case <-ctx.Done():
		return CompactStats{}, ctx.Err()
	}
}

// CompactCount returns the number of compactions since Open.
func (s *Store) CompactCount() uint64 { return s.erase.count.Load() }

// compact runs on the committer (see Compact).
func (s *Store) compact(why string) compactResult {
	start := time.Now()
	opts := boltcompact.Options{Open: boltOptions(s.cfg)}
	if h := s.erase.hook.Load(); h != nil {
		opts.Hook = *h
	}
	db, res, err := boltcompact.Swap(s.db, s.cfg.Path, opts)
	if db == nil {
		// Still on the old file, with the freed data in it: try again
		// after an interval.
		s.erase.erased()
		s.erase.freed()
		return compactResult{err: fmt.Errorf("store: compact: %w", err)}
	}
	s.erase.erased()
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
	s.erase.count.Add(1)
	st := CompactStats{Before: res.Before, After: res.After, Took: time.Since(start)}
	if err != nil {
		// The new file is in place and in use; only its directory entry
		// may not be durable yet.
		return compactResult{stats: st, err: fmt.Errorf("store: compact: %w", err)}
	}
	s.log.Info("store compacted", "reason", why, "before", res.Before, "after", res.After, "took", st.Took)
	return compactResult{stats: st}
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
