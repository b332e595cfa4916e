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

	"google.golang.org/grpc"

	"replds/follow"
	"replds/triggers"
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
	// Prefix is the remote subtree to mirror ("/" for all).
	Prefix string
	// Servers are the gRPC addresses to watch from. The watcher starts at a
	// random one and moves on to the next after an error.
	Servers []string
	// DialOptions are passed to grpc.NewClient for every server (transport
	// credentials at least).
	DialOptions []grpc.DialOption
	// StateFile is the bbolt file holding versions, resume token and pending
	// trigger work. Empty = Dir + StateSuffix. It must not be inside Dir.
	StateFile string
	// FileMode and DirMode are the permissions of the files and directories
	// the watcher creates.
	FileMode os.FileMode
	DirMode  os.FileMode
	// Once makes Run return after the first complete sync and its triggers.
	Once bool
	// DryRun logs what would change and which triggers would run, and
	// writes nothing to Dir or StateFile.
	DryRun bool
	// Triggers are run after each batch; nil = none.
	Triggers Triggers
	// MinBackoff and MaxBackoff bound the delay between reconnections
	// (exponential, full jitter).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxAttempts is, with Once, how many sessions in a row may fail before
	// Run gives up. Without Once the watcher retries forever.
	MaxAttempts int
	// IdleTimeout is how long a Watch stream may stay silent before the
	// watcher gives up on its server and reconnects to the next one. A
	// server sends a bookmark at least every BookmarkInterval (5s by
	// default) even when nothing changes, so about three times that tells
	// a stuck server or a black-holed connection from a quiet tree.
	IdleTimeout time.Duration
	// Atomic makes Dir a symlink to a complete snapshot directory beside
	// it, replaced by one rename per batch, so that a reader that resolves
	// Dir once sees every file of one batch or none of them. See
	// snapshot.go.
	Atomic bool
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

// DefaultIdleTimeout is three times the servers' default bookmark interval.
const DefaultIdleTimeout = 15 * time.Second

// DefaultConfig returns the defaults: private modes, 100ms..30s backoff,
// 10 attempts for Once, a 15s idle timeout, files owned by the process.
func DefaultConfig() Config {
	return Config{
		FileMode:    0o600,
		DirMode:     0o700,
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  30 * time.Second,
		MaxAttempts: 10,
		IdleTimeout: DefaultIdleTimeout,
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
	// Prefix, servers, backoff, attempts and idle timeout: the follower's.
	if err := c.follow(nil).Validate(); err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	if c.FileMode&^os.ModePerm != 0 || c.FileMode&0o400 == 0 {
		return fmt.Errorf("watcher: config: file mode %#o: want permission bits including owner read", uint32(c.FileMode))
	}
	if c.DirMode&^os.ModePerm != 0 || c.DirMode&0o700 != 0o700 {
		return fmt.Errorf("watcher: config: dir mode %#o: want permission bits including 0700", uint32(c.DirMode))
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

// follow returns the follower's part of c, logging to log.
func (c Config) follow(log *slog.Logger) follow.Config {
	return follow.Config{
		Prefix:      c.Prefix,
		Servers:     c.Servers,
		DialOptions: c.DialOptions,
		MinBackoff:  c.MinBackoff,
		MaxBackoff:  c.MaxBackoff,
		Once:        c.Once,
		MaxAttempts: c.MaxAttempts,
		IdleTimeout: c.IdleTimeout,
		Logger:      log,
	}
}
