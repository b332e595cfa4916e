package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/replds/replds/triggers"
	"github.com/replds/replds/watcher"
)

// pullOptions are the flags of pull.
type pullOptions struct {
	cfg          watcher.Config
	cf           clientFlags
	logf         logFlags
	triggersDir  string
	owner, group string
	httpAddr     string
}

// newPullCmd mirrors a remote prefix into a local directory and runs
// triggers when it changes.
func newPullCmd() *cobra.Command {
	o := &pullOptions{cfg: watcher.DefaultConfig()}
	cfg := &o.cfg
	cmd := &cobra.Command{
		Use:   "pull --store=DIR [--server=S ...] [--triggers-dir=D] [--atomic] [--owner=U] [--group=G] [--once] [--dry-run] REMOTE",
		Short: "Mirror the remote prefix REMOTE into a local directory, running triggers on changes",
		Long: `Mirror everything under REMOTE into --store and keep it up to date, running
the triggers of --triggers-dir after each change that concerns them. Files are
replaced atomically, with private modes by default. Progress is kept in a state
file next to the store directory (DIR.replds-state), so a restart resumes where
it stopped, from any server. A server silent for --idle-timeout (servers send a
bookmark every 5s) is left for the next one.

With --atomic, DIR is a symlink to a complete snapshot directory beside it
(.DIR.replds-snap-N), replaced in one rename per batch: a reader that opens DIR
once sees all the files of a batch or none. --owner and --group (names or
numeric ids; root only) own the files and directories pull creates.

With --once, exit after the first complete sync and its triggers; exit
non-zero if a trigger file is malformed, a trigger failed, or a leaf could not
be written. At start, files changed or deleted by hand are found and written
again. SIGHUP re-reads the triggers directory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "store", "", "local directory to mirror into (required)")
	f.StringVar(&o.triggersDir, "triggers-dir", "", "directory of trigger files (JSON, named NAME or NAME.json)")
	f.BoolVar(&cfg.Follow.Once, "once", false, "exit after the first complete sync and its triggers")
	f.BoolVar(&cfg.DryRun, "dry-run", false, "log what would change and which triggers would run; write nothing")
	f.Var(modeFlag{&cfg.FileMode}, "file-mode", "permissions of mirrored files (octal)")
	f.Var(modeFlag{&cfg.DirMode}, "dir-mode", "permissions of created directories (octal)")
	f.StringVar(&o.httpAddr, "http-addr", "", "serve the client's /metrics on HOST:PORT (plain HTTP: keep it local)")
	f.StringVar(&cfg.StateFile, "state-file", "", "state file (default: the store directory + "+watcher.StateSuffix+")")
	f.BoolVar(&cfg.Atomic, "atomic", false, "make the store directory a symlink to a snapshot swapped in one rename per batch")
	f.DurationVar(&cfg.AtomicGrace, "atomic-grace", cfg.AtomicGrace, "with --atomic, keep a replaced snapshot this long (and until the next swap) for readers that resolved the directory before")
	f.StringVar(&o.owner, "owner", "", "user (name or uid) owning mirrored files and directories (root only)")
	f.StringVar(&o.group, "group", "", "group (name or gid) owning mirrored files and directories (root only)")
	f.DurationVar(&cfg.Follow.IdleTimeout, "idle-timeout", cfg.Follow.IdleTimeout, "reconnect elsewhere when a server sends nothing for this long")
	cmd.MarkFlagRequired("store")
	o.cf.register(cmd)
	o.logf.register(cmd)
	return cmd
}

// run completes the config from the flags, wires the triggers, SIGHUP and
// metrics, and runs the watcher on prefix.
func (o *pullOptions) run(ctx context.Context, prefix string) error {
	cfg := &o.cfg
	log, err := o.logf.logger()
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Follow.Prefix = prefix
	if cfg.Follow.Servers, err = o.cf.serverList(); err != nil {
		return err
	}
	if cfg.Follow.DialOptions, err = o.cf.dialOptions(); err != nil {
		return err
	}
	if cfg.Owner, err = parseOwner(o.owner, o.group); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var runner *triggers.Runner
	if o.triggersDir != "" {
		store, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return err
		}
		runner, err = triggers.New(triggers.Config{Dir: o.triggersDir, Store: store, Logger: log})
		if err != nil {
			return err
		}
		// A running pull logs a malformed file and goes on with the
		// others; a single run fails on it, before it writes anything.
		if err := runner.Malformed(); err != nil && cfg.Follow.Once {
			return err
		}
		cfg.Triggers = runner
	}
	// Handled even without triggers: SIGHUP must not kill a pull.
	stop := onSIGHUP(func() {
		if runner == nil {
			log.Info("SIGHUP: no --triggers-dir to reload")
			return
		}
		if err := runner.Reload(); err != nil {
			log.Error("reload triggers failed; keeping the previous ones", "err", err)
		}
	})
	defer stop()
	if o.httpAddr != "" {
		stopHTTP, err := instrumentPull(cfg, o.httpAddr, log)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	w, err := watcher.New(*cfg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// parseOwner resolves --owner and --group, names or numeric ids, to the
// watcher's Owner: nil when neither is given, -1 for the one not given.
func parseOwner(owner, group string) (*watcher.Owner, error) {
	if owner == "" && group == "" {
		return nil, nil
	}
	o := &watcher.Owner{UID: -1, GID: -1}
	var err error
	if owner != "" {
		o.UID, err = lookupID(owner, func(name string) (string, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("--owner %q: %w", owner, err)
		}
	}
	if group != "" {
		o.GID, err = lookupID(group, func(name string) (string, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return nil, fmt.Errorf("--group %q: %w", group, err)
		}
	}
	return o, nil
}

// lookupID returns s as a numeric id, or else the id lookup finds for the
// name s: a name may start with a digit ("1password").
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	id, numErr := strconv.ParseUint(s, 10, 31)
	if numErr == nil {
		return int(id), nil
	}
	idStr, err := lookup(s)
	if err != nil {
		if errors.Is(numErr, strconv.ErrRange) {
			return 0, fmt.Errorf("numeric id out of range, and no such name: %w", err)
		}
		return 0, err
	}
	n, err := strconv.Atoi(idStr)
	if err != nil {
		return 0, fmt.Errorf("non-numeric id %q", idStr)
	}
	return n, nil
}

// modeFlag is a file mode flag written in octal.
type modeFlag struct{ m *os.FileMode }

func (f modeFlag) String() string {
	if f.m == nil {
		return ""
	}
	return fmt.Sprintf("%04o", uint32(*f.m))
}

func (f modeFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v&^0o777 != 0 {
		return fmt.Errorf("want octal permission bits such as 0600")
	}
	*f.m = os.FileMode(v)
	return nil
}

func (f modeFlag) Type() string { return "mode" }
