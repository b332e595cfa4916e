package boltcompact

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Step names a point between two steps of Swap, where tests inject
// failures.
type Step int

const (
	// StepCopied: the live keys are in the temp file, not yet synced.
	StepCopied Step = iota
	// StepSynced: the temp file is synced and open, not yet renamed.
	StepSynced
	// StepRenamed: the temp file is renamed over the file, the directory
	// is not yet synced.
	StepRenamed
)

func (s Step) String() string {
	switch s {
	case StepCopied:
		return "copied"
	case StepSynced:
		return "synced"
	case StepRenamed:
		return "renamed"
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// defaultTxMaxSize bounds the bytes copied per transaction of the copy, and
// so the memory it holds.
const defaultTxMaxSize = 64 << 20

// Options configures Swap.
type Options struct {
	// Open holds the options the new file is opened with (nil: bbolt's
	// defaults). The copy itself runs without fsync; NoSync is set as
	// asked once the copy is synced.
	Open *bolt.Options
	// Mode is the new file's permissions (0: 0600).
	Mode os.FileMode
	// TxMaxSize bounds the bytes copied per transaction (0: 64 MiB).
	TxMaxSize int64
	// Hook, when set, is called at each Step; an error fails Swap there,
	// as a failing system call at that point would.
	Hook func(Step) error
	// Cancel, when closed, stops a copy in progress (ErrCanceled).
	Cancel <-chan struct{}
}

// Result describes a Swap.
type Result struct {
	// Before and After are the sizes of the file before and after.
	Before, After int64
}

// TempPath returns the path of the copy Swap makes of path.
func TempPath(path string) string { return path + ".compact" }

// Clean removes a copy of path that a Swap interrupted by a crash left
// behind. The caller holds the lock of path (has it open), so that no
// Swap is running.
func Clean(path string) error {
	if err := os.Remove(TempPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("boltcompact: remove unfinished copy: %w", err)
	}
	return nil
}

// ErrCanceled is returned when Options.Cancel closed during a copy.
var ErrCanceled = errors.New("boltcompact: copy canceled")

// Swap replaces the file path, which src has open, by a copy of its live
// keys (see the package documentation), and returns the copy, open. The
// caller must not write to src during Swap; it keeps src open for its
// readers and closes it when they are done.
//
// If Swap fails before the rename, it returns a nil database, removes the
// copy and leaves path as it was: the caller goes on with src. Once the
// rename happened it returns the new database, with an error if the
// directory could not be synced: the caller must write only to the new
// database from then on, since src's file is no longer at path.
func Swap(src *bolt.DB, path string, opts Options) (*bolt.DB, Result, error) {
	var c *Copy
	err := src.View(func(tx *bolt.Tx) error {
		var err error
		c, err = Begin(tx, path, opts)
		return err
	})
	if err != nil {
		return nil, Result{}, err
	}
	return c.Install()
}

// Copy is a copy of a database in the making, beside its file: Begin
// fills it from a snapshot; the caller may then bring it up to date
// through DB, and Install puts it in place, or Abort drops it.
type Copy struct {
	db     *bolt.DB
	path   string
	opts   Options
	noSync bool
	before int64
}

// Begin copies the live keys that tx sees into a new file beside path
// (TempPath), flushes it and returns it open. tx may be a read
// transaction of a database others go on writing: the copy is of tx's
// snapshot. Begin uses tx from the calling goroutine only and leaves it
// open. On error no copy is left.
func Begin(tx *bolt.Tx, path string, opts Options) (*Copy, error) {
	c := &Copy{path: path, opts: opts}
	if fi, err := os.Stat(path); err == nil {
		c.before = fi.Size()
	}
	tmp := TempPath(path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("boltcompact: remove old copy: %w", err)
	}
	o := bolt.Options{}
	if opts.Open != nil {
		o = *opts.Open
	}
	c.noSync = o.NoSync
	// Every commit of the copy is made durable at once by Install.
	o.NoSync = true
	mode := opts.Mode
	if mode == 0 {
		mode = 0o600
	}
	db, err := bolt.Open(tmp, mode, &o)
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("boltcompact: open copy: %w", err)
	}
	c.db = db
	txMax := opts.TxMaxSize
	if txMax <= 0 {
		txMax = defaultTxMaxSize
	}
	err = copyTx(db, tx, txMax, opts.Cancel)
	if err == nil {
		err = step(opts, StepCopied)
	}
	if err == nil {
		// Flushed here, the bulk of the copy costs Install's sync nothing.
		err = db.Sync()
	}
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("boltcompact: copy: %w", err)
	}
	return c, nil
}

// DB returns the copy, open for writes that bring it up to date. They
// are made durable by Install.
func (c *Copy) DB() *bolt.DB { return c.db }

// Abort closes and removes the copy.
func (c *Copy) Abort() {
	// The copy is dropped: its close error changes nothing.
	_ = c.db.Close()
	_ = os.Remove(TempPath(c.path))
}

// Install syncs the copy, renames it over the file and syncs the
// directory, then returns the copy's database, with NoSync as Open asked.
// Its results are Swap's: nil and an error if it failed before the
// rename (the copy is dropped), the new database otherwise.
func (c *Copy) Install() (*bolt.DB, Result, error) {
	res := Result{Before: c.before}
	// NoSync skips the fsync of each commit, not this one.
	err := c.db.Sync()
	if err != nil {
		err = fmt.Errorf("boltcompact: sync copy: %w", err)
	} else {
		err = step(c.opts, StepSynced)
	}
	if err == nil {
		if err = os.Rename(TempPath(c.path), c.path); err != nil {
			err = fmt.Errorf("boltcompact: rename: %w", err)
		}
	}
	if err != nil {
		c.Abort()
		return nil, res, err
	}
	c.db.NoSync = c.noSync
	if fi, err := os.Stat(c.path); err == nil {
		res.After = fi.Size()
	}
	if err := step(c.opts, StepRenamed); err != nil {
		return c.db, res, err
	}
	if err := syncDir(filepath.Dir(c.path)); err != nil {
		return c.db, res, fmt.Errorf("boltcompact: sync directory: %w", err)
	}
	return c.db, res, nil
}

// cancelEvery is how many keys copyTx copies between checks of cancel.
const cancelEvery = 1024

// copyTx writes every bucket and key of src into dst, committing every
// txMax bytes, with full pages. It stops with ErrCanceled once cancel is
// closed. Nested buckets and bucket sequences are copied too.
func copyTx(dst *bolt.DB, src *bolt.Tx, txMax int64, cancel <-chan struct{}) error {
	tx, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var size, n int64
	// put copies one key (v != nil) or creates one bucket (v == nil) under
	// the bucket at keys in dst.
	put := func(keys [][]byte, k, v []byte, seq uint64) error {
		n++
		if n%cancelEvery == 0 && cancel != nil {
			select {
			case <-cancel:
				return ErrCanceled
			default:
			}
		}
		if size += int64(len(k) + len(v)); size > txMax {
			if err := tx.Commit(); err != nil {
				return err
			}
			if tx, err = dst.Begin(true); err != nil {
				return err
			}
			size = int64(len(k) + len(v))
		}
		if len(keys) == 0 {
			b, err := tx.CreateBucket(k)
			if err != nil {
				return err
			}
			return b.SetSequence(seq)
		}
		b := tx.Bucket(keys[0])
		for _, name := range keys[1:] {
			b = b.Bucket(name)
		}
		// Keys come in order: full pages, as bbolt.Compact packs them.
		b.FillPercent = 1.0
		if v != nil {
			return b.Put(k, v)
		}
		nb, err := b.CreateBucket(k)
		if err != nil {
			return err
		}
		return nb.SetSequence(seq)
	}
	err = src.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walkBucket(b, nil, name, put)
	})
	if err != nil {
		return err
	}
	return tx.Commit()
}

// walkBucket calls fn for bucket b, named k under keys, then for each of
// its keys and, recursively, nested buckets.
func walkBucket(b *bolt.Bucket, keys [][]byte, k []byte, fn func(keys [][]byte, k, v []byte, seq uint64) error) error {
	if err := fn(keys, k, nil, b.Sequence()); err != nil {
		return err
	}
	keys = append(keys, k)
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return walkBucket(b.Bucket(k), keys, k, fn)
		}
		return fn(keys, k, v, 0)
	})
}

func step(opts Options, s Step) error {
	if opts.Hook == nil {
		return nil
	}
	if err := opts.Hook(s); err != nil {
		return fmt.Errorf("boltcompact: %s: %w", s, err)
	}
	return nil
}

// syncDir fsyncs directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
