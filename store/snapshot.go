package store

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/nodepath"
)

// Snapshot reads the nodes at or under opts.Prefix (tombstones included,
// with copies of their data, in path order) and the version vector they
// reflect, all from one bbolt read transaction: commits made while it runs
// are not seen. It calls fn with each page (bounded by opts.MaxNodes and
// opts.MaxBytes, filtered by opts.Keep, resumed after opts.After) and the
// vector, one map shared by every page (read-only); fn is called at least
// once, with an empty page if nothing matches, so that the vector always
// reaches the caller. Only one page is held at a time.
//
// An error from fn, or ctx ending between pages, stops the snapshot and
// is returned. fn runs inside the read transaction: it may block (on a
// slow upload, say), and Writes and Applies commit meanwhile, with two
// costs while it lasts: the pages it reads cannot be reused, so the file
// grows faster, and a commit that must grow the file beyond its memory
// map (initialMmapSize) waits for it to end. A snapshot should not
// outlive its need.
func (s *Store) Snapshot(ctx context.Context, opts ScanOptions, fn func(vec Vector, page []Node) error) error {
	if err := nodepath.ValidatePrefix(opts.Prefix); err != nil {
		return err
	}
	return s.view(func(tx *bolt.Tx) error {
		vec, err := readVector(tx)
		if err != nil {
			return err
		}
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			nodes, next, err := scanPage(tx, opts, 0)
			if err != nil {
				return err
			}
			if err := fn(vec, nodes); err != nil {
				return err
			}
			if next == "" {
				return nil
			}
			opts.After = next
		}
	})
}

// readVector returns the vector stored in tx.
func readVector(tx *bolt.Tx) (Vector, error) {
	vec := make(Vector)
	err := tx.Bucket(bucketVector).ForEach(func(k, v []byte) error {
		o, err1 := decodeU64(k)
		seq, err2 := decodeU64(v)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("store: bad vector entry: %w", err)
		}
		vec[o] = seq
		return nil
	})
	if err != nil {
		return nil, err
	}
	return vec, nil
}
