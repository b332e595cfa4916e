package triggers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// waitDelay bounds how long Run waits for a command's output pipes to close
// after the command itself exited (a background grandchild may hold them).
const waitDelay = 2 * time.Second

// Config configures a Runner.
type Config struct {
	// Dir is the triggers directory. Empty means no triggers.
	Dir string
	// Store is the local mirror directory, given to commands as
	// REPLDS_STORE.
	Store string
	// Output receives the commands' stdout and stderr. nil = os.Stderr.
	// Writes to it are never concurrent.
	Output io.Writer
	// Logger receives the runner's logs. nil = slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a configuration with no triggers directory.
func DefaultConfig() Config { return Config{} }

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Dir != "" && c.Store == "" {
		return errors.New("triggers: config: empty store directory")
	}
	return nil
}

// Runner holds the loaded triggers and runs their commands. Its methods are
// safe for concurrent use: Reload may be called (e.g. on SIGHUP) while the
// watcher lists or runs triggers.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	list []Trigger // in name order; replaced whole, never modified
	// malformed joins the errors of the files the last load skipped as
	// malformed or unreadable; nil if none.
	malformed error
}

// New loads cfg.Dir and returns a Runner. Malformed trigger files are
// logged and skipped (see Reload, and Malformed); only an unreadable
// directory is an error.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Runner{cfg: cfg, log: log.With("component", "triggers")}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the triggers directory and replaces the set of triggers.
// Each malformed file is logged as an error naming it and what is wrong,
// and skipped while the others take effect (Malformed returns them until
// the next reload); each entry that is not a trigger file is named in a
// debug line. If the directory cannot be listed, the previous set stays
// and the error is returned.
func (r *Runner) Reload() error {
	if r.cfg.Dir == "" {
		return nil
	}
	res, err := load(r.cfg.Dir)
	if err != nil {
		return err
	}
	for _, s := range res.skipped {
		r.log.Debug("not a trigger file; ignored", "dir", r.cfg.Dir, "file", s[0], "reason", s[1])
	}
	for _, e := range res.fileErrs {
		r.log.Error("malformed trigger file; skipped", "dir", r.cfg.Dir, "err", e)
	}
	r.mu.Lock()
	r.list = res.list
	r.malformed = errors.Join(res.fileErrs...)
	r.mu.Unlock()
	names := make([]string, len(res.list))
	for i, t := range res.list {
		names[i] = t.Name
	}
	r.log.Info("triggers loaded", "dir", r.cfg.Dir, "count", len(res.list), "names", names)
	return nil
}

// Malformed returns the errors of the trigger files the last load skipped
// as malformed or unreadable, each naming its file (they wrap
// ErrMalformed, or a read error), or nil if every file loaded.
func (r *Runner) Malformed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.malformed
}

// List returns the current triggers in run (file-name) order. The caller
// must not modify the returned slice.
func (r *Runner) List() []Trigger {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.list
}

// RunError describes a run that did not exit with status 0.
type RunError struct {
	// Trigger is the trigger's name.
	Trigger string
	// ExitCode is the command's exit status, or -1 if it did not exit by
	// itself (killed by a signal, or could not start).
	ExitCode int
	// TimedOut is set when the process group was killed at the timeout.
	TimedOut bool
	// Err is the underlying error.
	Err error
}

func (e *RunError) Error() string {
	switch {
	case e.TimedOut:
		return fmt.Sprintf("triggers: %q: killed after timeout: %v", e.Trigger, e.Err)
	default:
		return fmt.Sprintf("triggers: %q: %v", e.Trigger, e.Err)
	}
}

func (e *RunError) Unwrap() error { return e.Err }

// Run runs t's command with c on stdin and blocks until the command exits.
// When t.Timeout expires or ctx ends first, the command's whole process
// group is killed with SIGKILL and Run returns once the command is reaped.
// Any outcome other than exit status 0 is a *RunError. Run does not
// serialize calls: the caller runs one trigger at a time.
func (r *Runner) Run(ctx context.Context, t Trigger, c Changes) error {
	input, err := json.Marshal(normalize(c))
	if err != nil {
		return &RunError{Trigger: t.Name, ExitCode: -1, Err: err}
	}
	cmd := exec.Command(t.Argv[0], t.Argv[1:]...)
	cmd.Env = append(os.Environ(), "REPLDS_PATH="+t.Path, "REPLDS_STORE="+r.cfg.Store)
	cmd.Stdin = bytes.NewReader(input)
	cmd.Stdout = r.cfg.Output
	cmd.Stderr = r.cfg.Output
	// Its own process group, so a timeout kills the shell and whatever it
	// started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return &RunError{Trigger: t.Name, ExitCode: -1, Err: err}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // always received below
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	var killedBy error
	select {
	case err = <-done:
	case <-timer.C:
		killedBy = fmt.Errorf("timeout %s", timeout)
		killGroup(cmd.Process.Pid)
		err = <-done
	case <-ctx.Done():
		killedBy = ctx.Err()
		killGroup(cmd.Process.Pid)
		err = <-done
	}
	switch {
	case killedBy != nil:
		return &RunError{Trigger: t.Name, ExitCode: -1, TimedOut: ctx.Err() == nil, Err: killedBy}
	case err == nil:
		return nil
	}
	code := -1
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	}
	return &RunError{Trigger: t.Name, ExitCode: code, Err: err}
}

// killGroup kills the process group led by pid. Errors are ignored: the
// group may already be gone.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// normalize returns c with sorted, non-nil lists.
func normalize(c Changes) Changes {
	fix := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		s = slices.Clone(s)
		slices.Sort(s)
		return s
	}
	return Changes{Added: fix(c.Added), Changed: fix(c.Changed), Deleted: fix(c.Deleted)}
}
