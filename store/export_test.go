package store

import (
	"errors"
	"fmt"
	"maps"
	"github.com/replds/replds/nodepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// SetCommitFailure makes every later commit fail with err instead of
// committing; nil restores normal commits.
func (s *Store) SetCommitFailure(err error) {
	if err == nil {
		s.SetCommitHook(nil)
		return
	}
	s.SetCommitHook(func() error { return err })
}

// SetCommitHook makes every later commit call f first, and fail with its
// error if not nil; nil f restores normal commits. A hook that blocks
// holds the committer as a slow fsync would.
func (s *Store) SetCommitHook(f func() error) {
	if f == nil {
		s.failCommit.Store(nil)
		return
	}
	s.failCommit.Store(&f)
}

// CheckConsistency reports every difference between memory and the file:
// the radix tree against the nodes bucket, the log against the nodes, the
// hash tree and stats against a rebuild, the vector and the clock against
// the state. It must run while no Write or Apply is in flight.
func (s *Store) CheckConsistency() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		hash := newHashTree()
		var stats Stats
		n := 0
		var ownMax uint64
		err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			n++
			path := string(k)
			if err := nodepath.Validate(path); err != nil {
				fail("stored path: %v", err)
			}
			m, _, err := decodeNode(v)
			if err != nil {
				fail("node %q: %v", path, err)
				return nil
			}
			b := bucketOf(path)
			hash.toggle(b, nodeHash(path, m))
			stats.add(m)
			if m.Origin == s.origin {
				ownMax = max(ownMax, m.Seq)
			}
			got, ok := s.tree.Get(path)
			switch {
			case !ok:
				fail("node %q in file, not in memory", path)
			case got.(*entry).meta() != m || int(got.(*entry).bucket) != b:
				fail("node %q: memory %+v, file %+v (bucket %d)", path, got, m, b)
			}
			lp := tx.Bucket(bucketLog).Get(logKey(m.Origin, m.Seq))
			if string(lp) != path {
				fail("node %q (%d/%d): log entry names %q", path, m.Origin, m.Seq, lp)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if s.tree.Len() != n {
			fail("memory holds %d nodes, file %d", s.tree.Len(), n)
		}
		indexed := 0
		for b, paths := range s.buckets {
			indexed += len(paths)
			if len(slices.Compact(slices.Sorted(slices.Values(paths)))) != len(paths) {
				fail("bucket %d index holds a path twice", b)
			}
			for _, p := range paths {
				if bucketOf(p) != b {
					fail("bucket %d index holds %q of bucket %d", b, p, bucketOf(p))
				}
				if _, ok := s.tree.Get(p); !ok {
					fail("bucket %d index holds %q, not in memory", b, p)
				}
			}
		}
		if indexed != n {
			fail("bucket index holds %d paths for %d nodes", indexed, n)
		}
		if logN := tx.Bucket(bucketLog).Stats().KeyN; logN != n {
			fail("log holds %d entries for %d nodes", logN, n)
		}
		if !hash.equal(s.hash) {
			fail("hash tree differs from a rebuild: root %x, rebuilt %x", s.hash.root(), hash.root())
		}
		if stats != s.stats {
			fail("stats %+v, rebuilt %+v", s.stats, stats)
		}
		if own := s.vector[s.origin]; own < ownMax {
			fail("own seq %d below stored seq %d", own, ownMax)
		}
		vec := make(Vector)
		err = tx.Bucket(bucketVector).ForEach(func(k, v []byte) error {
			o, err1 := decodeU64(k)
			seq, err2 := decodeU64(v)
			if err := errors.Join(err1, err2); err != nil {
				fail("vector entry: %v", err)
			}
			vec[o] = seq
			return nil
		})
		if err != nil {
			return err
		}
		if !maps.Equal(vec, s.vector) {
			fail("vector %v, file %v", s.vector, vec)
		}
		if v := tx.Bucket(bucketState).Get(keyHLC); v != nil {
			if h, _ := decodeU64(v); h > s.lastIssued {
				fail("clock %d behind file %d", s.lastIssued, h)
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// PlanByIndex reports whether a catch-up of f starting now would read the
// change index rather than scan its prefixes.
func (f *Feed) PlanByIndex() (bool, error) {
	r, err := f.startReplay(f.s.Vector())
	if err != nil {
		return false, err
	}
	return r.byIndex, nil
}
