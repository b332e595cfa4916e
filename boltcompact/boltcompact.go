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
	var res Result
	if fi, err := os.Stat(path); err == nil {
		res.Before = fi.Size()
	}
	tmp := TempPath(path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, res, fmt.Errorf("boltcompact: remove old copy: %w", err)
	}
	dst, err := copyLive(src, tmp, opts)
	if err != nil {
		_ = os.Remove(tmp)
		return nil, res, err
	}
	if err := os.Rename(tmp, path); err != nil {
		// The copy is unused: its close error changes nothing.
		_ = dst.Close()
		_ = os.Remove(tmp)
		return nil, res, fmt.Errorf("boltcompact: rename: %w", err)
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	if err := step(opts, StepRenamed); err != nil {
		return dst, res, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return dst, res, fmt.Errorf("boltcompact: sync directory: %w", err)
	}
	return dst, res, nil
}

// copyLive writes the live keys of src into a new file tmp, syncs it and
// returns it open. On error the caller removes tmp.
func copyLive(src *bolt.DB, tmp string, opts Options) (*bolt.DB, error) {
	o := bolt.Options{}
	if opts.Open != nil {
		o = *opts.Open
	}
	noSync := o.NoSync
	o.NoSync = true
	mode := opts.Mode
	if mode == 0 {
		mode = 0o600
	}
	dst, err := bolt.Open(tmp, mode, &o)
	if err != nil {
		return nil, fmt.Errorf("boltcompact: open copy: %w", err)
	}
	txMax := opts.TxMaxSize
	if txMax <= 0 {
		txMax = defaultTxMaxSize
	}
	err = bolt.Compact(dst, src, txMax)
	if err == nil {
		err = step(opts, StepCopied)
	}
	if err == nil {
		// NoSync skips the fsync of each commit, not this one.
		if err = dst.Sync(); err != nil {
			err = fmt.Errorf("boltcompact: sync copy: %w", err)
		}
	}
	if err == nil {
		err = step(opts, StepSynced)
	}
	if err != nil {
		_ = dst.Close()
		return nil, fmt.Errorf("boltcompact: copy: %w", err)
	}
	dst.NoSync = noSync
	return dst, nil
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
