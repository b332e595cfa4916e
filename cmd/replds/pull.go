package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"replds/triggers"
	"replds/watcher"
)

// newPullCmd mirrors a remote prefix into a local directory and runs
// triggers when it changes.
func newPullCmd() *cobra.Command {
	cfg := watcher.DefaultConfig()
	var (
		cf          clientFlags
		logf        logFlags
		triggersDir string
	)
	fileMode := modeFlag{&cfg.FileMode}
	dirMode := modeFlag{&cfg.DirMode}
	cmd := &cobra.Command{
		Use:   "pull --store=DIR [--server=S ...] [--triggers-dir=D] [--once] [--dry-run] REMOTE",
		Short: "Mirror the remote prefix REMOTE into a local directory, running triggers on changes",
		Long: `Mirror everything under REMOTE into --store and keep it up to date, running
the triggers of --triggers-dir after each change that concerns them. Files are
replaced atomically, with private modes by default. Progress is kept in a state
file next to the store directory (DIR.replds-state), so a restart resumes where
it stopped, from any server. With --once, exit after the first complete sync
and its triggers. SIGHUP re-reads the triggers directory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := logf.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.Prefix = args[0]
			if cfg.Servers, err = cf.serverList(); err != nil {
				return err
			}
			if cfg.DialOptions, err = cf.dialOptions(); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			var runner *triggers.Runner
			if triggersDir != "" {
				store, err := filepath.Abs(cfg.Dir)
				if err != nil {
					return err
				}
				runner, err = triggers.New(triggers.Config{Dir: triggersDir, Store: store, Logger: log})
				if err != nil {
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
			w, err := watcher.New(cfg)
			if err != nil {
				return err
			}
			return w.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "store", "", "local directory to mirror into (required)")
	f.StringVar(&triggersDir, "triggers-dir", "", "directory of trigger files (JSON, names without a dot)")
	f.BoolVar(&cfg.Once, "once", false, "exit after the first complete sync and its triggers")
	f.BoolVar(&cfg.DryRun, "dry-run", false, "log what would change and which triggers would run; write nothing")
	f.Var(fileMode, "file-mode", "permissions of mirrored files (octal)")
	f.Var(dirMode, "dir-mode", "permissions of created directories (octal)")
	f.StringVar(&cfg.StateFile, "state-file", "", "state file (default: the store directory + "+watcher.StateSuffix+")")
	cmd.MarkFlagRequired("store")
	cf.register(cmd)
	logf.register(cmd)
	return cmd
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
