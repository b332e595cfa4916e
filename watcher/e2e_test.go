package watcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/triggers"
	"github.com/replds/replds/watcher"
)

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pull is a watcher configured against a cluster, with one trigger on the
// whole prefix that logs each run as a JSON line.
type pull struct {
	t       *testing.T
	cfg     watcher.Config
	logFile string
}

func newPull(t *testing.T, c *servertest.Cluster, prefix string, servers ...int) *pull {
	t.Helper()
	base := t.TempDir()
	p := &pull{t: t, logFile: filepath.Join(base, "runs.log")}
	trigDir := filepath.Join(base, "triggers")
	if err := os.Mkdir(trigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf(`{ cat; echo; } >> '%s'`, p.logFile)
	b, _ := json.Marshal(map[string]string{"path": prefix, "command": cmd})
	if err := os.WriteFile(filepath.Join(trigDir, "log"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := watcher.DefaultConfig()
	cfg.Dir = filepath.Join(base, "mirror")
	cfg.Follow.Prefix = prefix
	for _, i := range servers {
		cfg.Follow.Servers = append(cfg.Follow.Servers, c.Addr(i))
	}
	cfg.Follow.DialOptions = c.DialOptions()
	cfg.Follow.MinBackoff, cfg.Follow.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	cfg.Logger = logger(t)
	r, err := triggers.New(triggers.Config{Dir: trigDir, Store: cfg.Dir, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Triggers = r
	p.cfg = cfg
	return p
}

func (p *pull) run(ctx context.Context) error {
	w, err := watcher.New(p.cfg)
	if err != nil {
		p.t.Fatalf("New: %v", err)
	}
	return w.Run(ctx)
}

// start runs the watcher in the background until the test ends.
func (p *pull) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	p.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				p.t.Errorf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			p.t.Error("Run did not return after cancel")
		}
	})
}

func (p *pull) runs() []triggers.Changes {
	b, err := os.ReadFile(p.logFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		p.t.Fatal(err)
	}
	var out []triggers.Changes
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c triggers.Changes
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			p.t.Fatalf("run log %q: %v", line, err)
		}
		out = append(out, c)
	}
	return out
}

func (p *pull) file(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.cfg.Dir, name))
	return string(b), err
}

// waitFile waits until the mirror holds name with content ("" with gone
// for a removed file).
func (p *pull) waitFile(c *servertest.Cluster, name, content string, gone bool) {
	p.t.Helper()
	c.Wait(20*time.Second, "file "+name, func() error {
		got, err := p.file(name)
		switch {
		case gone && errors.Is(err, os.ErrNotExist):
			return nil
		case gone:
			return fmt.Errorf("%s still there (%v)", name, err)
		case err != nil:
			return err
		case got != content:
			return fmt.Errorf("%s = %q, want %q", name, got, content)
		}
		return nil
	})
}

func TestWatcher_OnceSyncsAndResumes(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	c.Store(0, servertest.Put("/app/a", "A"), servertest.Put("/app/d/b", "B"), servertest.Put("/other/x", "X"))
	c.WaitConverged(20 * time.Second)

	p := newPull(t, c, "/app", 1)
	p.cfg.Follow.Once = true
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("Run once: %v", err)
	}
	for name, want := range map[string]string{"a": "A", "d/b": "B"} {
		if got, err := p.file(name); err != nil || got != want {
			t.Fatalf("file %s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(p.cfg.Dir, "x")); err == nil {
		t.Fatal("a node outside the prefix was mirrored")
	}
	runs := p.runs()
	if len(runs) != 1 || !reflect.DeepEqual(runs[0].Added, []string{"/app/a", "/app/d/b"}) {
		t.Fatalf("trigger runs = %+v, want one with both leaves added", runs)
	}

	// A second run resumes from the token: only what changed since comes,
	// from the other server.
	c.Store(0, servertest.Put("/app/a", "A2"), servertest.Delete("/app/d/b"), servertest.Put("/app/c", "C"))
	p.cfg.Follow.Servers = []string{c.Addr(0)}
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("second Run once: %v", err)
	}
	runs = p.runs()
	want := triggers.Changes{Added: []string{"/app/c"}, Changed: []string{"/app/a"}, Deleted: []string{"/app/d/b"}}
	if len(runs) != 2 || !reflect.DeepEqual(runs[1], want) {
		t.Fatalf("trigger runs = %+v, want a second one with %+v", runs, want)
	}
	if _, err := os.Stat(filepath.Join(p.cfg.Dir, "d")); err == nil {
		t.Fatal("empty directory d was not pruned")
	}
	// Nothing new: a third run runs no trigger.
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("third Run once: %v", err)
	}
	if got := len(p.runs()); got != 2 {
		t.Fatalf("trigger runs = %d after a sync with no change, want 2", got)
	}
}

func TestWatcher_FollowsLiveChangesAcrossFailover(t *testing.T) {
	c := servertest.NewCluster(t, 3)
	p := newPull(t, c, "/app", 0, 1, 2)
	p.start()
	c.Store(0, servertest.Put("/app/one", "1"))
	p.waitFile(c, "one", "1", false)

	// Stop each server in turn; the watcher moves on and keeps up.
	for round, i := range []int{0, 1, 2} {
		c.Stop(i)
		w := (i + 1) % 3
		data := fmt.Sprintf("round %d", round)
		c.Store(w, servertest.Put("/app/one", data), servertest.Put(fmt.Sprintf("/app/r%d", round), data))
		p.waitFile(c, "one", data, false)
		p.waitFile(c, fmt.Sprintf("r%d", round), data, false)
		c.Restart(i)
		c.WaitMembers(20 * time.Second)
	}
	c.Store(2, servertest.Delete("/app/one"))
	p.waitFile(c, "one", "", true)

	// Every change reached the trigger, none twice in a row as added.
	c.Wait(20*time.Second, "trigger runs", func() error {
		seen := map[string]bool{}
		for _, r := range p.runs() {
			for _, a := range r.Added {
				if seen[a] {
					return fmt.Errorf("%s reported added twice", a)
				}
				seen[a] = true
			}
		}
		for _, want := range []string{"/app/one", "/app/r0", "/app/r1", "/app/r2"} {
			if !seen[want] {
				return fmt.Errorf("%s never reported added", want)
			}
		}
		last := p.runs()[len(p.runs())-1]
		if !reflect.DeepEqual(last.Deleted, []string{"/app/one"}) {
			return fmt.Errorf("last run %+v, want /app/one deleted", last)
		}
		return nil
	})
}

// unreachable returns an address nothing listens on.
func unreachable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestWatcher_OnceGivesUpWhenNoServerAnswers(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	p := newPull(t, c, "/app", 0)
	p.cfg.Follow.Servers = []string{unreachable(t), unreachable(t)}
	p.cfg.Follow.Once = true
	p.cfg.Follow.MaxAttempts = 3
	err := p.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no complete sync after 3 attempts") {
		t.Fatalf("Run once against dead servers = %v, want it to give up after 3 attempts", err)
	}
	// It failed over from a dead server to a live one.
	p.cfg.Follow.Servers = []string{unreachable(t), c.Addr(0)}
	p.cfg.Follow.MaxAttempts = 10
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("Run once with one live server: %v", err)
	}
}

func TestWatcher_CancelStopsCleanly(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	p := newPull(t, c, "/app", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	c.Store(0, servertest.Put("/app/x", "X"))
	p.waitFile(c, "x", "X", false)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The state is released: another run can take it.
	p.cfg.Follow.Once = true
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("Run once after a stopped run: %v", err)
	}
}

func TestWatcher_OnceReportsFailedTriggers(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	c.Store(0, servertest.Put("/app/a", "A"))
	p := newPull(t, c, "/app", 0)
	trigDir := filepath.Join(filepath.Dir(p.cfg.Dir), "triggers")
	flag := filepath.Join(t.TempDir(), "fixed")
	b, _ := json.Marshal(map[string]string{"path": "/app", "command": "test -e " + flag})
	if err := os.WriteFile(filepath.Join(trigDir, "check"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cfg.Triggers.(*triggers.Runner).Reload(); err != nil {
		t.Fatal(err)
	}
	p.cfg.Follow.Once = true
	if err := p.run(context.Background()); !errors.Is(err, watcher.ErrTriggersFailed) {
		t.Fatalf("Run once with a failing trigger = %v, want ErrTriggersFailed", err)
	}
	if got := len(p.runs()); got != 1 {
		t.Fatalf("the working trigger ran %d times, want 1", got)
	}
	// Fixed: the next run retries the failed trigger only, with nothing new
	// from the server.
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.run(context.Background()); err != nil {
		t.Fatalf("Run once after the fix: %v", err)
	}
	if got := len(p.runs()); got != 1 {
		t.Fatalf("the working trigger ran %d times, want still 1", got)
	}
}
