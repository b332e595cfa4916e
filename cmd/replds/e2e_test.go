package main

// End-to-end tests: real replds processes, built once per test binary,
// each server with its own data directory and kernel-picked ports.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replds/replds/server/servertest"
)

// binary is the replds executable built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "replds-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "replds")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build replds:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The binary is built with the race detector: make any race fatal, and
	// skip its default one-second pause at exit.
	os.Setenv("GORACE", "atexit_sleep_ms=0 halt_on_error=1")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running replds process whose output goes to the test log.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []string
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, args...)
}

// startEnv is start with the test's environment, less its REPLDS_
// variables, plus env.
func startEnv(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	return startCmd(t, name, cmd)
}

// startCmd starts cmd, its output going to the test log.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{}), cmd: cmd}
	out, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			t.Logf("[%s] %s", name, sc.Text())
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

// kill signals the process and waits for it to exit.
func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("%s did not exit after %v", p.name, sig)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLine waits for an output line matching re and returns its submatches.
func (p *proc) waitLine(re *regexp.Regexp) []string {
	p.t.Helper()
	var m []string
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if m = re.FindStringSubmatch(l); m != nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
		return fmt.Errorf("no line matching %s from %s", re, p.name)
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

var startedRE = regexp.MustCompile(`msg="server started" addr=(\S+)`)

// serverProc is one replds server process and how to start it again.
type serverProc struct {
	*proc
	addr    string
	dataDir string
	peers   []string
}

// startServer starts a server on addr ("127.0.0.1:0" for a fresh port).
func startServer(t *testing.T, name, addr, dataDir string, peers ...string) *serverProc {
	t.Helper()
	args := []string{"server", "--addr=" + addr, "--gossip-addr=127.0.0.1:0", "--data-dir=" + dataDir,
		"--gossip-profile=local", "--sync-interval=200ms", "--name=" + name}
	for _, p := range peers {
		args = append(args, "--peer="+p)
	}
	p := start(t, name, args...)
	m := p.waitLine(startedRE)
	return &serverProc{proc: p, addr: m[1], dataDir: dataDir, peers: peers}
}

// restart starts the server again on the same address and data.
func (s *serverProc) restart(t *testing.T) *serverProc {
	t.Helper()
	return startServer(t, s.name, s.addr, s.dataDir, s.peers...)
}

// startCluster starts n peered servers.
func startCluster(t *testing.T, n int) []*serverProc {
	t.Helper()
	var out []*serverProc
	for i := range n {
		var peers []string
		if i > 0 {
			peers = []string{out[0].addr}
		}
		out = append(out, startServer(t, fmt.Sprintf("s%d", i), "127.0.0.1:0", t.TempDir(), peers...))
	}
	return out
}

// run runs a client command to completion and returns stdout, stderr and
// the exit code.
func run(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return runEnv(t, nil, stdin, args...)
}

// cleanEnv returns the test's environment without REPLDS_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REPLDS_") {
			env = append(env, kv)
		}
	}
	return env
}

// runEnv is run with env added to the environment.
func runEnv(t *testing.T, env []string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = stdin
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// mustRun runs a client command that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, nil, args...)
	if code != 0 {
		t.Fatalf("replds %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// waitFile waits until path holds want (want nil: path is absent) and
// returns how long that took.
func waitFile(t *testing.T, path string, want []byte) time.Duration {
	t.Helper()
	start := time.Now()
	err := servertest.Eventually(context.Background(), 10*time.Second, func() error {
		got, err := os.ReadFile(path)
		switch {
		case want == nil && os.IsNotExist(err):
			return nil
		case want == nil:
			return fmt.Errorf("%s still exists (%v)", path, err)
		case err != nil:
			return err
		case !bytes.Equal(got, want):
			return fmt.Errorf("%s = %q, want %q", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2E_Tutorial follows the README's quick tutorial with real processes.
func TestE2E_Tutorial(t *testing.T) {
	servers := startCluster(t, 3)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	writeFiles(t, data, map[string]string{"foo": "foo\n", "sub/one": "one\n", "sub/two": "two\n"})

	mustRun(t, "store", "--server="+servers[0].addr, data, "/data")
	// As README says, each server's log shows the write: "stored" on the
	// first, "replicated" on the others.
	servers[0].waitLine(regexp.MustCompile(`msg=stored nodes=3 `))
	for _, s := range servers[1:] {
		s.waitLine(regexp.MustCompile(`msg=replicated origin=[0-9a-f]{16} batches=1 nodes=3 first=/data/`))
	}

	sub := filepath.Join(work, "sub")
	pull := start(t, "pull", "pull", "--store="+sub, "--server="+servers[1].addr, "/data/sub")
	waitFile(t, filepath.Join(sub, "one"), []byte("one\n"))
	waitFile(t, filepath.Join(sub, "two"), []byte("two\n"))
	if _, err := os.Stat(filepath.Join(sub, "foo")); !os.IsNotExist(err) {
		t.Errorf("foo, outside /data/sub, was mirrored (%v)", err)
	}

	// An update stored on a third server reaches the running pull.
	writeFiles(t, data, map[string]string{"sub/two": "three\n"})
	mustRun(t, "store", "--server="+servers[2].addr, filepath.Join(data, "sub/two"), "/data/sub/two")
	d := waitFile(t, filepath.Join(sub, "two"), []byte("three\n"))
	t.Logf("update reached the pull in %v", d)

	// A delete too.
	mustRun(t, "rm", "--server="+servers[0].addr, "/data/sub/one")
	d = waitFile(t, filepath.Join(sub, "one"), nil)
	t.Logf("delete reached the pull in %v", d)

	// The read commands see the same tree from any server.
	if got := mustRun(t, "cat", "--server="+servers[2].addr, "/data/foo"); got != "foo\n" {
		t.Errorf("cat /data/foo = %q", got)
	}
	if got := mustRun(t, "ls", "--server="+servers[1].addr, "/data"); got != "/data/foo\n/data/sub/\n" {
		t.Errorf("ls /data = %q", got)
	}
	pull.kill(syscall.SIGTERM)
}

// TestE2E_AcknowledgedWriteSurvivesSIGKILL kills a lone server right after
// acknowledged writes: they are all there after the restart.
func TestE2E_AcknowledgedWriteSurvivesSIGKILL(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	for i := range 20 {
		_, errOut, code := run(t, strings.NewReader(fmt.Sprintf("v%d", i)), "store", "--server="+s.addr, "-", fmt.Sprintf("/k/%d", i))
		if code != 0 {
			t.Fatalf("store /k/%d: %s", i, errOut)
		}
	}
	s.kill(syscall.SIGKILL)
	s = s.restart(t)
	for i := range 20 {
		if got := mustRun(t, "cat", "--server="+s.addr, fmt.Sprintf("/k/%d", i)); got != fmt.Sprintf("v%d", i) {
			t.Errorf("after SIGKILL, /k/%d = %q, want v%d", i, got, i)
		}
	}
}

// TestE2E_KilledServerCatchesUp kills a server, writes elsewhere, restarts
// it: it gets what it missed.
func TestE2E_KilledServerCatchesUp(t *testing.T) {
	servers := startCluster(t, 3)
	mustRun(t, "store", "--server="+servers[0].addr, "-", "/before")
	servers[2].kill(syscall.SIGKILL)
	tree := t.TempDir()
	files := map[string]string{}
	for i := range 100 {
		files[fmt.Sprintf("d%d/f%d", i%5, i)] = fmt.Sprint(i)
	}
	writeFiles(t, tree, files)
	mustRun(t, "store", "--server="+servers[1].addr, tree, "/while-down")
	servers[2] = servers[2].restart(t)
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		out, errOut, code := run(t, nil, "ls", "-r", "--server="+servers[2].addr, "/while-down")
		if code != 0 {
			return fmt.Errorf("ls: %s", errOut)
		}
		if n := strings.Count(out, "\n"); n != 100 {
			return fmt.Errorf("restarted server lists %d nodes, want 100", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestE2E_ClientErrors checks that bad input fails with one clear line and
// a non-zero exit, and changes nothing.
func TestE2E_ClientErrors(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	file := filepath.Join(t.TempDir(), "f")
	writeFiles(t, filepath.Dir(file), map[string]string{"f": "x"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"store", "--server=" + s.addr, file, "relative"}, "not absolute"},
		{[]string{"store", "--server=" + s.addr, file, "/a/../b"}, `".."`},
		{[]string{"store", "--server=" + s.addr, file, "/"}, "invalid path"},
		{[]string{"store", "--server=" + s.addr, file, "/a\tb"}, "control"},
		{[]string{"store", "--server=" + s.addr, file, ""}, "empty"},
		{[]string{"cat", "--server=" + s.addr, "/missing"}, "not found"},
		{[]string{"rm", "--server=" + s.addr, "/missing"}, "not found"},
		{[]string{"store", "--server=" + s.addr, filepath.Join(t.TempDir(), "nope"), "/x"}, "no such file"},
		{[]string{"cat", "/x"}, "no server"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			_, errOut, code := run(t, nil, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr = %q, want one line naming %q", errOut, tc.want)
			}
		})
	}
	if out := mustRun(t, "ls", "-r", "--server="+s.addr, "/"); out != "" {
		t.Errorf("refused commands wrote %q", out)
	}
}
