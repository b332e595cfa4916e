package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/replds/replds/follow"
)

// ErrTriggersFailed is returned by a Once run whose sync completed but some
// trigger failed; their changes stay pending for the next run.
var ErrTriggersFailed = errors.New("watcher: triggers failed")

// ErrNotConverged is returned by a Once run whose sync completed but left
// leaves out of the mirror (a local directory in the way, a drifted file
// the servers did not bring again); they stay pending for the next run or
// batch. The error names them.
var ErrNotConverged = errors.New("watcher: mirror not converged")

// Watcher mirrors a remote prefix into a local directory. Create it with
// New; Run does the work.
type Watcher struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Watcher. It opens nothing: Run does.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{cfg: cfg, log: log.With("component", "watcher", "prefix", cfg.Follow.Prefix)}, nil
}

// Run opens the mirror directory and the state file (locking it), then
// follows the servers (a follow.Follower feeding the mirror; the first
// session begins with the triggers a previous run left pending),
// reconnecting with backoff, until ctx ends (it then returns nil) or a
// permanent error (invalid prefix, permission denied). With Once it returns
// nil after the first complete sync and its triggers, ErrTriggersFailed if
// one of them failed, and an error after MaxAttempts failed sessions in a
// row or if ctx ends first. Local errors (disk, state) end a session like a
// network error does. Everything is closed when Run returns. Run blocks;
// another Run on the same state file fails (the file is locked).
func (w *Watcher) Run(ctx context.Context) (err error) {
	a, closeLocal, err := w.openLocal(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeLocal(); err == nil {
			err = cerr
		}
	}()
	fc := w.cfg.Follow
	if fc.Logger == nil {
		fc.Logger = w.log
	}
	f, err := follow.New(fc, a)
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	if err := f.Run(ctx); err != nil {
		return err
	}
	return w.result(a)
}

// result is the outcome of a Run whose follower returned nil: with Once, a
// sync that left leaves out of the mirror or had triggers fail is an
// error naming them.
func (w *Watcher) result(a *applier) error {
	if !w.cfg.Follow.Once {
		return nil
	}
	var errs []error
	if n := len(a.unconverged); n > 0 {
		errs = append(errs, fmt.Errorf("%w: %d leaves not written: %s; they stay pending", ErrNotConverged, n, firstFew(a.unconverged)))
	}
	if a.failed > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of them; their changes stay pending", ErrTriggersFailed, a.failed))
	}
	return errors.Join(errs...)
}

// openLocal opens the mirror directory and the state, stopping if ctx
// ends. The returned func closes them (and removes a dry run's throw-away
// state).
func (w *Watcher) openLocal(ctx context.Context) (*applier, func() error, error) {
	m := &mirror{ctx: ctx, dry: w.cfg.DryRun, fileMode: w.cfg.FileMode, dirMode: w.cfg.DirMode, owner: w.cfg.Owner, log: w.log}
	// A dry run reads the current snapshot through the symlink, as any
	// reader does, and needs no snapshot management.
	snapshotted := w.cfg.Atomic && !w.cfg.DryRun
	var root *os.Root
	if !snapshotted {
		var err error
		if root, err = w.openDir(); err != nil {
			return nil, nil, err
		}
		m.root = root
	}
	closeRoot := func() {
		if root != nil {
			root.Close()
		}
		if m.snaps != nil {
			m.snaps.close()
		}
	}
	var (
		st  *state
		tmp string
		err error
	)
	if w.cfg.DryRun {
		st, tmp, err = openDryState(w.cfg.stateFile(), w.cfg.Follow.Prefix, w.cfg.Dir)
	} else {
		st, err = openState(w.cfg.stateFile(), w.cfg.Follow.Prefix, w.cfg.Dir)
	}
	if err != nil {
		closeRoot()
		return nil, nil, err
	}
	a := &applier{
		st:      st,
		m:       m,
		prefix:  w.cfg.Follow.Prefix,
		log:     w.log,
		trig:    w.cfg.Triggers,
		sched:   map[string]schedule{},
		now:     time.Now,
		once:    w.cfg.Follow.Once,
		metrics: w.cfg.Metrics,
	}
	closeAll := func() error {
		err := st.close()
		if tmp != "" {
			os.Remove(tmp)
		}
		closeRoot()
		if err != nil {
			return fmt.Errorf("watcher: close state: %w", err)
		}
		return nil
	}
	if err := a.openMirror(ctx, snapshotted, w.cfg.Dir, w.cfg.AtomicGrace); err != nil {
		closeAll()
		return nil, nil, err
	}
	return a, closeAll, nil
}

// openDir creates the store directory if missing (not in a dry run) and
// opens it. A dry run of a directory that does not exist returns nil: it
// has nothing to read and writes nothing anyway.
func (w *Watcher) openDir() (*os.Root, error) {
	if !w.cfg.DryRun {
		if err := os.Mkdir(w.cfg.Dir, w.cfg.DirMode); err == nil {
			if o := w.cfg.Owner; o != nil {
				if err := os.Lchown(w.cfg.Dir, o.UID, o.GID); err != nil {
					return nil, fmt.Errorf("watcher: %w", err)
				}
			}
			if err := os.Chmod(w.cfg.Dir, w.cfg.DirMode); err != nil {
				return nil, fmt.Errorf("watcher: %w", err)
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("watcher: store directory: %w", err)
		}
	}
	root, err := os.OpenRoot(w.cfg.Dir)
	switch {
	case err == nil:
		return root, nil
	case w.cfg.DryRun && errors.Is(err, fs.ErrNotExist):
		return nil, nil
	default:
		return nil, fmt.Errorf("watcher: store directory: %w", err)
	}
}

// openMirror opens the snapshots of atomic mode (snapshotted; retired ones
// kept for grace) and tidies
// the mirror, removing leftover temporary files.
func (a *applier) openMirror(ctx context.Context, snapshotted bool, dir string, grace time.Duration) error {
	if snapshotted {
		sealed, err := a.st.sealed()
		if err == nil {
			a.m.snaps, err = openSnapshots(dir, sealed, a.st.setSealed, grace, a.m)
		}
		if err != nil {
			return fmt.Errorf("watcher: atomic store directory: %w", err)
		}
		a.m.root = a.m.snaps.root()
	}
	if err := a.m.tidy(ctx, a.tracked); err != nil {
		return fmt.Errorf("watcher: tidy store directory: %w", err)
	}
	return nil
}

// settle re-checks the snapshots of atomic mode before a session, so that
// a swap that failed in the previous one is completed.
func (a *applier) settle() error {
	if a.m.snaps == nil {
		return nil
	}
	sealed, err := a.st.sealed()
	if err == nil {
		err = a.m.snaps.settle(sealed)
	}
	a.m.root = a.m.snaps.root()
	if err != nil {
		return fmt.Errorf("watcher: atomic store directory: %w", err)
	}
	return nil
}

// tracked reports whether the local name is a leaf the state knows, so that
// a leaf named like a temporary file is not taken for one.
func (a *applier) tracked(name string) bool {
	candidates := []string{a.prefix + "/" + name}
	if a.prefix == "/" {
		candidates = []string{"/" + name}
	}
	if name == a.localName(a.prefix) {
		candidates = append(candidates, a.prefix)
	}
	return a.st.knowsAny(candidates...)
}
