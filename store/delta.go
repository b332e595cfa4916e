package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/nodepath"
)

// DeltaOptions selects what Store.Delta reads.
type DeltaOptions struct {
	// Prefix bounds the read to a subtree, on segment boundaries.
	Prefix string
	// From is the vector the reader holds: winners whose write it covers
	// are left out. nil or empty reads every winner.
	From Vector
	// Keep filters nodes (changed ones and, for Walk, all of them) by path
	// and metadata; nil keeps all. It runs inside the read transaction and
	// must not block or call the Store.
	Keep func(path string, m Meta) bool
	// Walk, when set and the delta is not empty, is called for every node
	// at or under Prefix that Keep keeps, tombstones included, metadata
	// only, in path order, from the same transaction and before the first
	// page: a backup hashes the whole state the delta brings it to.
	Walk func(path string, m Meta)
	// MaxNodes and MaxBytes bound a page as in ScanOptions.
	MaxNodes, MaxBytes int
}

// Delta reads, from one bbolt read transaction, the vector it reflects and
// the current winners at or under opts.Prefix whose write opts.From does
// not cover (tombstones included, with copies of their data, in path
// order), page by page to fn. Finding them costs what the log bucket holds
// above From, not what the store holds: an incremental backup after k
// changes reads O(k log N). fn is called at least once, with an empty page
// when nothing changed, so that the vector reaches the caller. Nodes
// brought by hash-tree repair carry seqs no vector covers yet: they count
// as changed until the vector does, so a reader may see one twice, never
// miss one.
//
// fn runs inside the read transaction, with the costs Snapshot describes.
// A From below the tombstone collection floor fails with ErrCollected:
// deletes it lacks may be gone; read everything again instead.
//
// An error from fn, or ctx ending between pages, stops the read and is
// returned.
func (s *Store) Delta(ctx context.Context, opts DeltaOptions, fn func(vec Vector, page []Node) error) error {
	if err := nodepath.ValidatePrefix(opts.Prefix); err != nil {
		return err
	}
	maxNodes, maxBytes := pageLimits(opts.MaxNodes, opts.MaxBytes)
	return s.view(func(tx *bolt.Tx) error {
		vec, err := readVector(tx)
		if err != nil {
			return err
		}
		if len(opts.From) > 0 {
			// Tombstones above From that were collected are not in the
			// log any more: the delta would miss their deletes.
			floor, err := readFloor(tx)
			if err != nil {
				return err
			}
			if floor.Below(opts.From) {
				return ErrCollected
			}
		}
		paths, err := changedPaths(ctx, tx, opts)
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			return fn(vec, nil)
		}
		if opts.Walk != nil {
			if err := walkMeta(ctx, tx, opts); err != nil {
				return err
			}
		}
		nodes := tx.Bucket(bucketNodes)
		var page []Node
		var arena copyArena
		size := 0
		for _, p := range paths {
			v := nodes.Get([]byte(p))
			if v == nil {
				return fmt.Errorf("store: log names %s, which has no node", nodepath.Quote(p))
			}
			m, data, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("store: node %s: %w", nodepath.Quote(p), err)
			}
			if len(page) > 0 && (len(page) >= maxNodes || size+len(data) > maxBytes) {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := fn(vec, page); err != nil {
					return err
				}
				page, size, arena = nil, 0, copyArena{}
			}
			page = append(page, Node{Path: p, Meta: m, Data: arena.copy(data)})
			size += len(data)
		}
		return fn(vec, page)
	})
}

// changedPaths returns, sorted, the paths at or under opts.Prefix kept by
// opts.Keep whose winner's write opts.From does not cover, from the log.
func changedPaths(ctx context.Context, tx *bolt.Tx, opts DeltaOptions) ([]string, error) {
	nodes := tx.Bucket(bucketNodes)
	c := tx.Bucket(bucketLog).Cursor()
	var paths []string
	k, v := c.First()
	for k != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		origin, _, err := decodeLogKey(k)
		if err != nil {
			return nil, fmt.Errorf("store: log: %w", err)
		}
		// Skip what From covers of this origin, then read the rest of it.
		k, v = c.Seek(logKey(origin, opts.From[origin]+1))
		for ; k != nil && binary.BigEndian.Uint64(k[:8]) == origin; k, v = c.Next() {
			p := string(v)
			if !nodepath.Under(p, opts.Prefix) {
				continue
			}
			if opts.Keep != nil {
				m, _, err := decodeNode(nodes.Get(v))
				if err != nil {
					return nil, fmt.Errorf("store: node %s: %w", nodepath.Quote(p), err)
				}
				if !opts.Keep(p, m) {
					continue
				}
			}
			paths = append(paths, p)
		}
		if origin == ^uint64(0) {
			break
		}
		k, v = c.Seek(logKey(origin+1, 0))
	}
	slices.Sort(paths)
	return paths, nil
}

// walkMeta calls opts.Walk for every node at or under opts.Prefix that
// opts.Keep keeps, in path order, reading headers only.
func walkMeta(ctx context.Context, tx *bolt.Tx, opts DeltaOptions) error {
	c := tx.Bucket(bucketNodes).Cursor()
	visit := func(k, v []byte) error {
		m, _, err := decodeNode(v)
		if err != nil {
			return fmt.Errorf("store: node %s: %w", nodepath.Quote(string(k)), err)
		}
		p := string(k)
		if opts.Keep == nil || opts.Keep(p, m) {
			opts.Walk(p, m)
		}
		return nil
	}
	sub := opts.Prefix + "/"
	if opts.Prefix == "/" {
		sub = "/"
	} else if k, v := c.Seek([]byte(opts.Prefix)); k != nil && string(k) == opts.Prefix {
		if err := visit(k, v); err != nil {
			return err
		}
	}
	n := 0
	for k, v := c.Seek([]byte(sub)); k != nil && bytes.HasPrefix(k, []byte(sub)); k, v = c.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := visit(k, v); err != nil {
			return err
		}
	}
	return nil
}
