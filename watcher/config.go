package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/triggers"
)

// StateSuffix is appended to the mirror directory to name the default state
// file, which therefore sits next to the mirror, never inside it.
const StateSuffix = ".replds-state"

// Triggers is the set of commands run after each batch. *triggers.Runner
// implements it. The watcher calls List and Run from one goroutine, one run
// at a time; List may change between calls (a reload), so implementations
// must be safe against a concurrent reload.
type Triggers interface {
	// List returns the current triggers in run order. The watcher does not
	// modify the slice.
	List() []triggers.Trigger
	// Run runs t with the changes under its path and blocks until the
	// command is done. It returns an error when the command failed, timed
	// out or ctx ended.
	Run(ctx context.Context, t triggers.Trigger, c triggers.Changes) error
}

var _ Triggers = (*triggers.Runner)(nil)

// Config configures a Watcher.
type Config struct {
	// Dir is the local mirror directory. It is created (with DirMode) if
	// missing; its parent must exist.
	Dir string
	// Follow configures the follower that feeds the mirror: the remote
	// prefix to mirror, the servers and how to dial them, backoff, idle
	// timeout, and Once (return after the first complete sync and its
	// triggers). Its Logger, when nil, is the watcher's.
	Follow follow.Config
	// StateFile is the bbolt file holding versions, resume token and pending
	// trigger work. Empty = Dir + StateSuffix. It must not be inside Dir.
	StateFile string
	// FileMode and DirMode are the permissions of the files and directories
	// the watcher creates.
	FileMode os.FileMode
	DirMode  os.FileMode
	// DryRun logs what would change and which triggers would run, and
	// writes nothing to Dir or StateFile.
	DryRun bool
	// Triggers are run after each batch; nil = none.
	Triggers Triggers
	// Atomic makes Dir a symlink to a complete snapshot directory beside
	// it, replaced by one rename per batch, so that a reader that resolves
	// Dir once sees every file of one batch or none of them. See
	// snapshot.go.
	Atomic bool
	// AtomicGrace is, in atomic mode, how long a snapshot replaced by a
	// newer one stays for the readers that resolved Dir before (it stays
	// at least until the next swap in any case).
	AtomicGrace time.Duration
	// Owner, when set, owns every file and directory the watcher creates
	// (the store directory, and in atomic mode the snapshots and the
	// symlink, included). It needs root.
	Owner *Owner
	// Metrics, when set, records the watcher's progress (see Metrics).
	Metrics *Metrics
	// Logger receives the watcher's logs (paths, versions and counts, never
	// node data). nil = slog.Default().
	Logger *slog.Logger
}

// Owner is the ownership given to what the watcher creates. -1 leaves an
// id unchanged (the process's own).
type Owner struct {
	UID, GID int
}

// DefaultAtomicGrace is how long a replaced snapshot stays by default.
const DefaultAtomicGrace = 10 * time.Second

// DefaultConfig returns the defaults: the follower's (follow.DefaultConfig),
// private modes, files owned by the process.
func DefaultConfig() Config {
	return Config{
		Follow:      follow.DefaultConfig(),
		FileMode:    0o600,
		DirMode:     0o700,
		AtomicGrace: DefaultAtomicGrace,
	}
}

// geteuid is os.Geteuid, replaced in tests that check the refusal to
// change ownership without root.
var geteuid = os.Geteuid

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("watcher: config: empty store directory")
	}
	if err := c.Follow.Validate(); err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	if c.FileMode&^os.ModePerm != 0 || c.FileMode&0o400 == 0 {
		return fmt.Errorf("watcher: config: file mode %#o: want permission bits including owner read", uint32(c.FileMode))
	}
	if c.DirMode&^os.ModePerm != 0 || c.DirMode&0o700 != 0o700 {
		return fmt.Errorf("watcher: config: dir mode %#o: want permission bits including 0700", uint32(c.DirMode))
	}
	if c.AtomicGrace < 0 {
		return fmt.Errorf("watcher: config: atomic grace %s: want >= 0", c.AtomicGrace)
	}
	if o := c.Owner; o != nil {
		if o.UID < -1 || o.GID < -1 || (o.UID == -1 && o.GID == -1) {
			return fmt.Errorf("watcher: config: owner %d:%d: want ids >= 0, -1 for unchanged, not both -1", o.UID, o.GID)
		}
		if euid := geteuid(); euid != 0 {
			return fmt.Errorf("watcher: config: setting the owner or group of mirrored files needs root (running as uid %d)", euid)
		}
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("watcher: config: store directory: %w", err)
	}
	if dir == string(filepath.Separator) {
		return errors.New("watcher: config: the store directory cannot be /")
	}
	state, err := filepath.Abs(c.stateFile())
	if err != nil {
		return fmt.Errorf("watcher: config: state file: %w", err)
	}
	if rel, err := filepath.Rel(dir, state); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("watcher: config: state file %s is inside the store directory %s", state, dir)
	}
	return nil
}

// stateFile returns the state file path, applying the default.
func (c Config) stateFile() string {
	if c.StateFile != "" {
		return c.StateFile
	}
	return filepath.Clean(c.Dir) + StateSuffix
}
