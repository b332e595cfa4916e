package triggers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/triggers"
)

// syncBuffer collects command output safely.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newRunner writes the given trigger files into a fresh directory and
// loads it.
func newRunner(t *testing.T, store string, files map[string]string) (*triggers.Runner, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	out := &syncBuffer{}
	r, err := triggers.New(triggers.Config{Dir: dir, Store: store, Output: out, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, out
}

func trigger(t *testing.T, r *triggers.Runner, name string) triggers.Trigger {
	t.Helper()
	for _, tr := range r.List() {
		if tr.Name == name {
			return tr
		}
	}
	t.Fatalf("trigger %q not loaded; have %+v", name, r.List())
	return triggers.Trigger{}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRunner_Run_SeesEnvStdinAndFiles(t *testing.T) {
	store := t.TempDir()
	writeFile(t, filepath.Join(store, "cert.pem"), "CERT")
	out := filepath.Join(t.TempDir(), "out")
	cmd := fmt.Sprintf(`{ echo "path=$REPLDS_PATH"; echo "store=$REPLDS_STORE"; echo "file=$(cat "$REPLDS_STORE/cert.pem")"; cat; } > %s`, out)
	r, _ := newRunner(t, store, map[string]string{"web": `{"path": "/certs", "command": ` + jsonString(cmd) + `}`})

	changes := triggers.Changes{Added: []string{"/certs/b", "/certs/a"}, Deleted: []string{"/certs/old"}}
	if err := r.Run(context.Background(), trigger(t, r, "web"), changes); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(got), "\n", 4)
	if want := []string{"path=/certs", "store=" + store, "file=CERT"}; !reflect.DeepEqual(lines[:3], want) {
		t.Fatalf("command saw %q, want %q", lines[:3], want)
	}
	var stdin triggers.Changes
	if err := json.Unmarshal([]byte(lines[3]), &stdin); err != nil {
		t.Fatalf("stdin %q: %v", lines[3], err)
	}
	want := triggers.Changes{Added: []string{"/certs/a", "/certs/b"}, Changed: []string{}, Deleted: []string{"/certs/old"}}
	if !reflect.DeepEqual(stdin, want) {
		t.Fatalf("stdin = %+v, want %+v (sorted, never null)", stdin, want)
	}
	if !strings.Contains(lines[3], `"changed":[]`) {
		t.Fatalf("stdin %q: want an empty array for changed, not null", lines[3])
	}
}

func TestRunner_Run_Argv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r, _ := newRunner(t, t.TempDir(), map[string]string{
		"argv": fmt.Sprintf(`{"path": "/a", "command": ["/bin/sh", "-c", "echo \"$0 $1\" > %s", "x y", "$HOME"]}`, out),
	})
	if err := r.Run(context.Background(), trigger(t, r, "argv"), triggers.Changes{}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Arguments are passed as is: no second round of shell expansion.
	if got, _ := os.ReadFile(out); string(got) != "x y $HOME\n" {
		t.Fatalf("argv command wrote %q, want %q", got, "x y $HOME\n")
	}
}

func TestRunner_Run_ExitStatus(t *testing.T) {
	r, out := newRunner(t, t.TempDir(), map[string]string{"fail": `{"path": "/a", "command": "echo oops >&2; exit 3"}`})
	err := r.Run(context.Background(), trigger(t, r, "fail"), triggers.Changes{})
	var re *triggers.RunError
	if !errors.As(err, &re) || re.ExitCode != 3 || re.TimedOut || re.Trigger != "fail" {
		t.Fatalf("Run = %v, want a RunError with exit code 3", err)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Run error %q does not give the exit status", err)
	}
	if !strings.Contains(out.String(), "oops") {
		t.Fatalf("output %q lacks the command's stderr", out.String())
	}
}

func TestRunner_Run_MissingProgram(t *testing.T) {
	r, _ := newRunner(t, t.TempDir(), map[string]string{"none": `{"path": "/a", "command": ["/nonexistent/program"]}`})
	err := r.Run(context.Background(), trigger(t, r, "none"), triggers.Changes{})
	var re *triggers.RunError
	if !errors.As(err, &re) || re.ExitCode != -1 {
		t.Fatalf("Run = %v, want a RunError with exit code -1", err)
	}
}

// processGone reports whether pid has exited (a zombie counts as gone: it
// waits for a reaper that may not exist in a container).
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesized command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-poll.C:
		}
	}
}

func TestRunner_Run_TimeoutKillsProcessGroup(t *testing.T) {
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "pid")
	ok := filepath.Join(tmp, "ok")
	// The shell starts a child and waits for it: the timeout must kill both.
	hang := fmt.Sprintf(`sleep 1000 & echo $! > %s.tmp; mv %s.tmp %s; wait`, pidFile, pidFile, pidFile)
	r, _ := newRunner(t, tmp, map[string]string{
		"hang": `{"path": "/a", "command": ` + jsonString(hang) + `, "timeout": "300ms"}`,
		"next": `{"path": "/a", "command": ` + jsonString("touch "+ok) + `}`,
	})
	start := time.Now()
	err := r.Run(context.Background(), trigger(t, r, "hang"), triggers.Changes{})
	var re *triggers.RunError
	if !errors.As(err, &re) || !re.TimedOut {
		t.Fatalf("Run = %v, want a timed-out RunError", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %s with a 300ms timeout", d)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the command did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the shell's child to be killed", func() bool { return processGone(pid) })

	// The next run is not affected.
	if err := r.Run(context.Background(), trigger(t, r, "next"), triggers.Changes{}); err != nil {
		t.Fatalf("Run after a timeout: %v", err)
	}
	if _, err := os.Stat(ok); err != nil {
		t.Fatalf("next trigger did not run: %v", err)
	}
}

func TestRunner_Run_ContextCancelKills(t *testing.T) {
	r, _ := newRunner(t, t.TempDir(), map[string]string{"hang": `{"path": "/a", "command": "sleep 1000"}`})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, trigger(t, r, "hang"), triggers.Changes{}) }()
	cancel()
	select {
	case err := <-done:
		var re *triggers.RunError
		if !errors.As(err, &re) || re.TimedOut || !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want a RunError wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was canceled")
	}
}

func TestRunner_Reload(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b"), `{"path": "/b", "command": "true"}`)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := triggers.New(triggers.Config{Dir: dir, Store: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		var out []string
		for _, tr := range r.List() {
			out = append(out, tr.Name)
		}
		return out
	}
	if got := names(); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("List = %v, want [b]", got)
	}
	if err := r.Malformed(); err != nil {
		t.Fatalf("Malformed = %v, want nil", err)
	}
	writeFile(t, filepath.Join(dir, "a.json"), `{"path": "/a", "command": "true"}`)
	writeFile(t, filepath.Join(dir, "c"), `{"path": "/c", "command": "true", "timeout": 5}`) // malformed: skipped, others load
	writeFile(t, filepath.Join(dir, "a.json~"), `{"path": `)
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("List after Reload = %v, want [a b] (a.json is trigger a)", got)
	}
	if err := r.Malformed(); !errors.Is(err, triggers.ErrMalformed) || !strings.Contains(err.Error(), `"c": field "timeout": want a string`) {
		t.Fatalf("Malformed = %v, want ErrMalformed naming c and its field timeout", err)
	}
	for _, re := range []string{
		`level=ERROR msg="malformed trigger file; skipped" .*"c\\": field \\"timeout\\"`,
		`level=DEBUG msg="not a trigger file; ignored" .*file=a.json~ reason="editor backup"`,
	} {
		if !regexp.MustCompile(re).MatchString(logs.String()) {
			t.Errorf("no log line matching %s in:\n%s", re, logs.String())
		}
	}
	// An unreadable directory keeps the previous set.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a removed directory succeeded")
	}
	if got := names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("List after failed Reload = %v, want [a b]", got)
	}
}

func TestRunner_NoDir(t *testing.T) {
	r, err := triggers.New(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.List(); len(got) != 0 {
		t.Fatalf("List = %v, want none", got)
	}
}
