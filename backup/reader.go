package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// ReadOptions configures Rebuild.
type ReadOptions struct {
	// Identities decrypt encrypted backups (ParseIdentityFile).
	Identities []age.Identity
	// Prefix keeps only the nodes at or under it; "" keeps all.
	Prefix string
}

// ParseIdentityFile reads an age identity file: one AGE-SECRET-KEY-1...
// per line, blank lines and "#" comments ignored. Errors never repeat the
// file's content.
func ParseIdentityFile(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("backup: identity file %s: %v (want age secret keys, AGE-SECRET-KEY-1..., one a line)", path, err)
	}
	return ids, nil
}

// storedReader reads a stored file, hashing and counting its bytes.
type storedReader struct {
	io.Reader
	sum *digest
}

// finish reads the rest of the stored bytes and checks their size and
// checksum against f.
func (c *storedReader) finish(key string, f File) error {
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("backup: read %s: %w", key, err)
	}
	if c.sum.n != f.Size {
		return fmt.Errorf("backup: %s: size %d, manifest says %d: %w", key, c.sum.n, f.Size, ErrCorrupt)
	}
	if c.sum.sha256() != f.SHA256 {
		return fmt.Errorf("backup: %s: checksum mismatch: %w", key, ErrCorrupt)
	}
	return nil
}

// openStored opens a stored file for reading and checking.
func openStored(ctx context.Context, t target.Target, key string) (io.ReadCloser, *storedReader, error) {
	rc, err := t.Get(ctx, key, 0, -1)
	if errors.Is(err, target.ErrNotExist) {
		return nil, nil, fmt.Errorf("backup: %s: missing: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backup: read %s: %w", key, err)
	}
	sum := newDigest()
	return rc, &storedReader{Reader: io.TeeReader(rc, sum), sum: sum}, nil
}

// checkFile reads a stored file whole and checks its size and checksum,
// without decrypting it.
func checkFile(ctx context.Context, t target.Target, m *Manifest, f File) error {
	key := m.Key(f.Name)
	rc, cr, err := openStored(ctx, t, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return cr.finish(key, f)
}

// readFile decodes the records of one node file, calling fn for each, and
// checks the file against the manifest at its end. A decode failure is
// reported as a checksum mismatch when the stored bytes do not match
// either, since that is the cause.
func readFile(ctx context.Context, t target.Target, m *Manifest, f File, ids []age.Identity, fn func(*store.Node) error) error {
	key := m.Key(f.Name)
	rc, cr, err := openStored(ctx, t, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	var src io.Reader = cr
	if m.Encrypted {
		r, err := age.Decrypt(cr, ids...)
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			// A damaged header reads as no match: say which it is.
			if err := cr.finish(key, f); err != nil {
				return err
			}
			return noIdentity(m, len(ids))
		}
		if err != nil {
			return corrupt(key, cr, f, fmt.Errorf("decrypt: %v", err))
		}
		src = r
	}
	zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxNodeData+(64<<20)))
	if err != nil {
		return fmt.Errorf("backup: zstd: %w", err)
	}
	defer zr.Close()
	d := decoder{r: bufio.NewReaderSize(zr, 256<<10)}
	if err := d.readHeader(); err != nil {
		return corrupt(key, cr, f, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n store.Node
		more, err := d.next(&n)
		if err != nil {
			return corrupt(key, cr, f, err)
		}
		if !more {
			break
		}
		if err := fn(&n); err != nil {
			return err
		}
	}
	if d.count != f.Nodes {
		return corrupt(key, cr, f, fmt.Errorf("%w: %d records, manifest says %d", errFormat, d.count, f.Nodes))
	}
	// Nothing may follow the trailer (and reading to the end makes the
	// decompressor and the decryption check their own integrity).
	if extra, err := d.r.ReadByte(); err == nil {
		return corrupt(key, cr, f, fmt.Errorf("%w: byte %#x after the trailer", errFormat, extra))
	} else if err != io.EOF {
		return corrupt(key, cr, f, err)
	}
	return cr.finish(key, f)
}

// corrupt returns the error for a file that failed to decode: a checksum
// mismatch when the stored bytes are not those of the manifest, else the
// decode error itself.
func corrupt(key string, cr *storedReader, f File, decodeErr error) error {
	if err := cr.finish(key, f); err != nil {
		return err
	}
	return fmt.Errorf("backup: %s: %v: %w", key, decodeErr, ErrCorrupt)
}

// noIdentity is the one-line error for an encrypted backup that cannot be
// read with the identities given.
func noIdentity(m *Manifest, given int) error {
	to := strings.Join(m.Recipients, ", ")
	if given == 0 {
		return fmt.Errorf("backup: %s is encrypted to %s and no identity was given: %w", m.Dir(), to, ErrNoIdentity)
	}
	return fmt.Errorf("backup: %s is encrypted to %s and none of the %d identities given matches: %w", m.Dir(), to, given, ErrNoIdentity)
}

// checkChain verifies that chain is a full followed by incrementals, each
// the parent of the next, all of one job.
func checkChain(chain []Manifest) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty chain", ErrInvalid)
	}
	if chain[0].Kind != KindFull {
		return fmt.Errorf("%w: chain starts with %s, a %s backup, not a full", ErrInvalid, chain[0].Dir(), chain[0].Kind)
	}
	for i := 1; i < len(chain); i++ {
		m, prev := &chain[i], &chain[i-1]
		if m.Kind != KindIncremental || m.Job != prev.Job || m.Parent != prev.ID {
			return fmt.Errorf("%w: chain: %s does not follow %s", ErrInvalid, m.Dir(), prev.Dir())
		}
	}
	return nil
}

// Rebuild yields the state at the end of chain (Chain, ChainAt, Latest):
// for every path, the node of the newest backup of the chain that holds
// it, tombstones included (Deleted set), in increasing path order, with
// data, under opts.Prefix. fn owns the node it gets; an error from it
// stops Rebuild, which returns it.
//
// Memory is proportional to the incrementals of the chain: their records
// are held in a map, then the full is streamed in path order (Rebuild
// fails with ErrCorrupt if it is not) and merged with them. Each file's
// size and checksum are checked once it has been read to its end, so fn
// may see nodes of a file that then fails with ErrCorrupt: callers that
// must not act on corrupt data run Verify first, or buffer. With
// opts.Prefix, files whose First and Last paths show they hold nothing of
// the subtree are not read (nor checked). A missing file
// is ErrNotFound; an encrypted chain without a matching identity
// ErrNoIdentity, before any node is yielded.
func Rebuild(ctx context.Context, t target.Target, chain []Manifest, opts ReadOptions, fn func(store.Node) error) error {
	if err := checkChain(chain); err != nil {
		return err
	}
	if opts.Prefix != "" {
		if err := nodepath.ValidatePrefix(opts.Prefix); err != nil {
			return fmt.Errorf("%w: prefix: %v", ErrInvalid, err)
		}
	}
	keep := func(p string) bool { return opts.Prefix == "" || nodepath.Under(p, opts.Prefix) }
	for i := range chain {
		if chain[i].Encrypted && len(opts.Identities) == 0 {
			return noIdentity(&chain[i], 0)
		}
	}
	newer := make(map[string]store.Node)
	for i := 1; i < len(chain); i++ {
		m := &chain[i]
		for _, f := range m.Files {
			if f.outside(opts.Prefix) {
				continue
			}
			err := readFile(ctx, t, m, f, opts.Identities, func(n *store.Node) error {
				if keep(n.Path) {
					newer[n.Path] = *n
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	paths := make([]string, 0, len(newer))
	for p := range newer {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	// emitUpTo yields the incremental nodes before path (all if last).
	emitUpTo := func(path string, last bool) error {
		for len(paths) > 0 && (last || paths[0] < path) {
			n := newer[paths[0]]
			delete(newer, paths[0])
			paths = paths[1:]
			if err := fn(n); err != nil {
				return err
			}
		}
		return nil
	}
	full := &chain[0]
	var prev string
	first := true
	for _, f := range full.Files {
		if f.outside(opts.Prefix) {
			continue
		}
		err := readFile(ctx, t, full, f, opts.Identities, func(n *store.Node) error {
			if !first && n.Path <= prev {
				return fmt.Errorf("backup: %s: node %s after %s: a full must be in path order: %w", full.Key(f.Name), nodepath.Quote(n.Path), nodepath.Quote(prev), ErrCorrupt)
			}
			first, prev = false, n.Path
			if !keep(n.Path) {
				return nil
			}
			if err := emitUpTo(n.Path, false); err != nil {
				return err
			}
			if len(paths) > 0 && paths[0] == n.Path {
				return nil // the incremental's node, newer, comes next
			}
			return fn(*n)
		})
		if err != nil {
			return err
		}
	}
	return emitUpTo("", true)
}
