package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestModeFlag(t *testing.T) {
	tests := []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0600", 0o600, true},
		{"640", 0o640, true},
		{"0755", 0o755, true},
		{"01777", 0, false}, // sticky bit: not a permission
		{"0800", 0, false},
		{"rw", 0, false},
	}
	for _, tt := range tests {
		var m os.FileMode
		err := modeFlag{&m}.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && m != tt.want) {
			t.Errorf("Set(%q) = %v, mode %o; want ok=%v mode %o", tt.in, err, m, tt.ok, tt.want)
		}
	}
}

// writeTrigger writes a trigger file whose command appends its stdin as a
// line to out.
func writeTrigger(t *testing.T, dir, name, path, out string) {
	t.Helper()
	cmd := fmt.Sprintf(`{ echo "$REPLDS_PATH $(cat)"; } >> '%s'`, out)
	b, _ := json.Marshal(map[string]string{"path": path, "command": cmd})
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestE2E_PullOnceWithTriggers(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	work := t.TempDir()
	writeFiles(t, filepath.Join(work, "src"), map[string]string{"a": "A", "d/b": "B", "x/c": "C"})
	mustRun(t, "store", "--server="+s.addr, filepath.Join(work, "src"), "/app")

	trig := filepath.Join(work, "triggers")
	if err := os.Mkdir(trig, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "runs")
	writeTrigger(t, trig, "d", "/app/d", out)
	writeTrigger(t, trig, "none", "/elsewhere", out)
	if err := os.WriteFile(filepath.Join(trig, "broken"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	mirror := filepath.Join(work, "mirror")

	// A dry run writes nothing, not even the state.
	_, errOut, code := run(t, nil, "pull", "--once", "--dry-run", "--server="+s.addr, "--store="+mirror, "--triggers-dir="+trig, "/app")
	wouldWrite := regexp.MustCompile(`msg="would write" .*path=/app/d/b`)
	wouldRun := regexp.MustCompile(`msg="would run trigger" .*trigger=d `)
	if code != 0 || !wouldWrite.MatchString(errOut) || !wouldRun.MatchString(errOut) {
		t.Fatalf("dry run: exit %d, output:\n%s", code, errOut)
	}
	for _, p := range []string{mirror, mirror + ".replds-state", out} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("dry run created %s (%v)", p, err)
		}
	}

	_, errOut, code = run(t, nil, "pull", "--once", "--server="+s.addr, "--store="+mirror, "--triggers-dir="+trig, "/app")
	if code != 0 {
		t.Fatalf("pull --once: exit %d:\n%s", code, errOut)
	}
	if !regexp.MustCompile(`msg="trigger file skipped" .*broken`).MatchString(errOut) {
		t.Errorf("the malformed trigger file is not reported by name:\n%s", errOut)
	}
	for name, want := range map[string]string{"a": "A", "d/b": "B", "x/c": "C"} {
		p := filepath.Join(mirror, name)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(mirror, "d")); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir d mode %v, want 0700", fi.Mode().Perm())
	}
	runs, _ := os.ReadFile(out)
	want := `/app/d {"added":["/app/d/b"],"changed":[],"deleted":[]}` + "\n"
	if string(runs) != want {
		t.Fatalf("trigger runs = %q, want %q", runs, want)
	}

	// A bad prefix is one error line and a non-zero exit.
	_, errOut, code = run(t, nil, "pull", "--once", "--server="+s.addr, "--store="+mirror, "app")
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "not absolute") {
		t.Fatalf("pull of a relative prefix: exit %d, output %q", code, errOut)
	}
}

func TestE2E_PullReloadsTriggersOnSIGHUP(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	work := t.TempDir()
	trig := filepath.Join(work, "triggers")
	if err := os.Mkdir(trig, 0o700); err != nil {
		t.Fatal(err)
	}
	mirror := filepath.Join(work, "mirror")
	pull := start(t, "pull", "pull", "--server="+s.addr, "--store="+mirror, "--triggers-dir="+trig, "/app")
	pull.waitLine(regexp.MustCompile(`msg=synced`))

	out := filepath.Join(work, "runs")
	writeTrigger(t, trig, "late", "/app", out)
	pull.cmd.Process.Signal(syscall.SIGHUP)
	pull.waitLine(regexp.MustCompile(`msg="triggers loaded".* count=1`))

	run(t, strings.NewReader("v1"), "store", "--server="+s.addr, "-", "/app/k")
	waitFile(t, filepath.Join(mirror, "k"), []byte("v1"))
	waitFile(t, out, []byte(`/app {"added":["/app/k"],"changed":[],"deleted":[]}`+"\n"))

	pull.kill(syscall.SIGTERM)
	if pull.err != nil {
		t.Fatalf("pull after SIGTERM: %v", pull.err)
	}
}
