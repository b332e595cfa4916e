package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/triggers"
	"github.com/replds/replds/watcher"
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
	writeTrigger(t, trig, "d.json", "/app/d", out)
	writeTrigger(t, trig, "none", "/elsewhere", out)
	writeTrigger(t, trig, "d.json~", "/app", out) // an editor backup: ignored
	mirror := filepath.Join(work, "mirror")

	// A malformed trigger file fails --once before anything is written,
	// naming the file and the field.
	if err := os.WriteFile(filepath.Join(trig, "broken"), []byte(`{"path": "/app", "comand": "true"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, nil, "pull", "--once", "--server="+s.addr, "--store="+mirror, "--triggers-dir="+trig, "/app")
	if code == 0 || !strings.Contains(lastLine(errOut), `"broken": unknown field "comand"`) {
		t.Fatalf("pull --once with a malformed trigger: exit %d, want non-zero naming the file and field:\n%s", code, errOut)
	}
	if _, err := os.Stat(mirror); !os.IsNotExist(err) {
		t.Fatalf("pull --once with a malformed trigger created the store directory (%v)", err)
	}
	if err := os.Remove(filepath.Join(trig, "broken")); err != nil {
		t.Fatal(err)
	}

	// A dry run writes nothing, not even the state.
	_, errOut, code = run(t, nil, "pull", "--once", "--dry-run", "--server="+s.addr, "--store="+mirror, "--triggers-dir="+trig, "/app")
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

func TestParseOwner(t *testing.T) {
	tests := []struct {
		owner, group string
		want         *watcher.Owner
		ok           bool
	}{
		{"", "", nil, true},
		{"0", "", &watcher.Owner{UID: 0, GID: -1}, true},
		{"root", "root", &watcher.Owner{UID: 0, GID: 0}, true},
		{"", "12345", &watcher.Owner{UID: -1, GID: 12345}, true},
		{"4242", "4343", &watcher.Owner{UID: 4242, GID: 4343}, true},
		{"no-such-user-here", "", nil, false},
		{"", "no-such-group-here", nil, false},
		{"12x", "", nil, false},
		{"99999999999", "", nil, false},
	}
	for _, tt := range tests {
		got, err := parseOwner(tt.owner, tt.group)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseOwner(%q, %q) = %+v, %v; want %+v, ok=%v", tt.owner, tt.group, got, err, tt.want, tt.ok)
		}
	}
}

// TestLookupID: a number is an id, anything else a name to look up, even
// when it starts with a digit.
func TestLookupID(t *testing.T) {
	names := map[string]string{"1password": "1001", "web": "33", "42": "7", "bad": "x"}
	var looked []string
	lookup := func(name string) (string, error) {
		looked = append(looked, name)
		if id, ok := names[name]; ok {
			return id, nil
		}
		return "", fmt.Errorf("unknown name %s", name)
	}
	tests := []struct {
		s      string
		want   int
		ok     bool
		lookup bool // whether the name is looked up
	}{
		{"0", 0, true, false},
		{"42", 42, true, false},
		{"2147483647", 2147483647, true, false},
		{"1password", 1001, true, true},
		{"web", 33, true, true},
		{"12x", 0, false, true},
		{"99999999999", 0, false, true},
		{"-1", 0, false, true},
		{"bad", 0, false, true},
	}
	for _, tt := range tests {
		looked = nil
		got, err := lookupID(tt.s, lookup)
		if (err == nil) != tt.ok || got != tt.want || (len(looked) > 0) != tt.lookup {
			t.Errorf("lookupID(%q) = %d, %v (looked up: %q); want %d, ok=%v, looked up=%v",
				tt.s, got, err, looked, tt.want, tt.ok, tt.lookup)
		}
	}
}

// TestE2E_PullAtomicWithOwner: --atomic makes the store directory a link
// to the one snapshot; --owner/--group own everything it created.
func TestE2E_PullAtomicWithOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("--owner needs root")
	}
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	run(t, strings.NewReader("cert 1"), "store", "--server="+s.addr, "-", "/tls/cert")
	work := t.TempDir()
	mirror := filepath.Join(work, "mirror")
	pull := func() {
		t.Helper()
		mustRun(t, "pull", "--once", "--atomic", "--owner=4242", "--group=4343", "--server="+s.addr, "--store="+mirror, "/tls")
	}
	pull()
	run(t, strings.NewReader("cert 2"), "store", "--server="+s.addr, "-", "/tls/cert")
	run(t, strings.NewReader("key 2"), "store", "--server="+s.addr, "-", "/tls/sub/key")
	pull()
	// Replaced snapshots stay for --atomic-grace; none is kept with 0
	// but the one the last swap replaced.
	run(t, strings.NewReader("cert 3"), "store", "--server="+s.addr, "-", "/tls/cert")
	mustRun(t, "pull", "--once", "--atomic", "--atomic-grace=0", "--owner=4242", "--group=4343", "--server="+s.addr, "--store="+mirror, "/tls")
	run(t, strings.NewReader("cert 2"), "store", "--server="+s.addr, "-", "/tls/cert")
	mustRun(t, "pull", "--once", "--atomic", "--atomic-grace=0", "--owner=4242", "--group=4343", "--server="+s.addr, "--store="+mirror, "/tls")

	target, err := os.Readlink(mirror)
	if err != nil {
		t.Fatalf("store directory: %v, want a symlink", err)
	}
	entries, _ := os.ReadDir(work)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(target, ".mirror.replds-snap-"))
	retired := fmt.Sprintf(".mirror.replds-snap-%d", n-1)
	if want := []string{retired, target, "mirror", "mirror.replds-state"}; !reflect.DeepEqual(names, want) {
		t.Errorf("beside the store directory: %v, want %v", names, want)
	}
	waitFile(t, filepath.Join(mirror, "cert"), []byte("cert 2"))
	waitFile(t, filepath.Join(mirror, "sub/key"), []byte("key 2"))
	for _, p := range []string{mirror, filepath.Join(work, target), filepath.Join(mirror, "cert"), filepath.Join(mirror, "sub"), filepath.Join(mirror, "sub/key")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s owned by %d:%d, want 4242:4343", p, st.Uid, st.Gid)
		}
	}
	_, errOut, code := run(t, nil, "pull", "--once", "--owner=no-such-user-here", "--server="+s.addr, "--store="+mirror, "/tls")
	if code == 0 || !strings.Contains(errOut, "no-such-user-here") {
		t.Errorf("pull with an unknown owner: exit %d, %q", code, errOut)
	}
}

// TestE2E_PullFailoverKill9 kills the server a pull follows, with SIGKILL,
// in the middle of a stream of writes made on the other server: the pull
// resumes there, and its trigger sees every change exactly once, with
// versions never going back.
func TestE2E_PullFailoverKill9(t *testing.T) {
	servers := startCluster(t, 2)
	work := t.TempDir()
	trig := filepath.Join(work, "triggers")
	if err := os.Mkdir(trig, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "runs")
	// Each run logs the counter it sees on disk and its changes. The
	// wait window lets changes pile up rather than fork a shell per write.
	cmd := fmt.Sprintf(`printf '%%s %%s\n' "$(cat "$REPLDS_STORE/counter")" "$(cat)" >> '%s'`, out)
	b, _ := json.Marshal(map[string]any{"path": "/f", "command": cmd, "wait": map[string]string{"min": "20ms", "max": "100ms"}})
	if err := os.WriteFile(filepath.Join(trig, "log"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	mirror := filepath.Join(work, "mirror")
	pull := start(t, "pull", "pull", "--server="+servers[0].addr, "--server="+servers[1].addr,
		"--store="+mirror, "--triggers-dir="+trig, "--log-level=debug", "/f")
	watching := pull.waitLine(regexp.MustCompile(`msg=watching .*server=(\S+)`))[1]
	a, bs := servers[0], servers[1]
	if watching == bs.addr {
		a, bs = bs, a
	}
	t.Logf("pull follows %s; writing on %s", a.name, bs.name)

	conn := servertest.Dial(t, bs.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	client := repldspb.NewRepldsClient(conn)
	const writes, killAt = 150, 50
	for i := 1; i <= writes; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{
			{Path: fmt.Sprintf("/f/k%03d", i), Data: []byte(fmt.Sprint(i))},
			{Path: "/f/counter", Data: []byte(fmt.Sprint(i))},
		}})
		cancel()
		if err != nil {
			t.Fatalf("write %d on %s: %v", i, bs.name, err)
		}
		if i == killAt {
			a.kill(syscall.SIGKILL)
		}
	}
	pull.waitLine(regexp.MustCompile(`msg=watching .*server=` + regexp.QuoteMeta(bs.addr) + ` resume=true`))
	waitFile(t, filepath.Join(mirror, "counter"), []byte(fmt.Sprint(writes)))

	type runLine struct {
		counter int
		triggers.Changes
	}
	var runs []runLine
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		runs = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			n, js, _ := strings.Cut(l, " ")
			var r runLine
			var err error
			if r.counter, err = strconv.Atoi(n); err != nil {
				return fmt.Errorf("run line %q: %v", l, err)
			}
			if err := json.Unmarshal([]byte(js), &r.Changes); err != nil {
				return fmt.Errorf("run line %q: %v", l, err)
			}
			runs = append(runs, r)
		}
		if last := runs[len(runs)-1].counter; last != writes {
			return fmt.Errorf("last trigger run saw counter %d, want %d", last, writes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	added := map[string]int{}
	prev := 0
	for i, r := range runs {
		if r.counter < prev {
			t.Errorf("run %d saw counter %d after %d: went back", i, r.counter, prev)
		}
		prev = r.counter
		for _, p := range r.Added {
			added[p]++
		}
		for _, p := range r.Changed {
			if p != "/f/counter" {
				t.Errorf("run %d: %s reported changed; it was written once", i, p)
			}
		}
		if len(r.Deleted) > 0 {
			t.Errorf("run %d: deleted %v", i, r.Deleted)
		}
	}
	for i := 1; i <= writes; i++ {
		p := fmt.Sprintf("/f/k%03d", i)
		if added[p] != 1 {
			t.Errorf("%s reported added %d times, want once", p, added[p])
		}
		waitFile(t, filepath.Join(mirror, p[len("/f/"):]), []byte(fmt.Sprint(i)))
	}
	if added["/f/counter"] != 1 || len(added) != writes+1 {
		t.Errorf("added: counter %d times, %d paths in all; want once and %d", added["/f/counter"], len(added), writes+1)
	}

	// The pull's own account: each leaf written to disk once, the counter
	// only ever to a higher version, though the other server replayed
	// what the pull may already have had.
	wrote := regexp.MustCompile(`msg=wrote .*path=(\S+) version=(\d+)`)
	skipped := regexp.MustCompile(`msg="batch applied" .*skipped=(\d+)`)
	written := map[string]int{}
	var lastVersion uint64
	var skips int
	pull.mu.Lock()
	for _, l := range pull.lines {
		if m := skipped.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			skips += n
		}
		m := wrote.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		written[m[1]]++
		if m[1] == "/f/counter" {
			v, _ := strconv.ParseUint(m[2], 10, 64)
			if v <= lastVersion {
				t.Errorf("counter written at version %d after %d", v, lastVersion)
			}
			lastVersion = v
		}
	}
	pull.mu.Unlock()
	for p, n := range written {
		if n != 1 && p != "/f/counter" {
			t.Errorf("%s written %d times", p, n)
		}
	}
	if len(written) != writes+1 {
		t.Errorf("%d paths written, want %d", len(written), writes+1)
	}
	t.Logf("%d writes, %d trigger runs, counter written %d times, %d replayed nodes skipped", writes, len(runs), written["/f/counter"], skips)
	pull.kill(syscall.SIGTERM)
	if pull.err != nil {
		t.Fatalf("pull after SIGTERM: %v", pull.err)
	}
}

// TestE2E_PullOnceConverges: a leaf where a local directory stands makes
// pull --once fail naming it, with true counts, and stay pending; once the
// directory is gone the next --once writes it. A mirrored file deleted or
// edited by hand is written again by the next --once.
func TestE2E_PullOnceConverges(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	work := t.TempDir()
	writeFiles(t, filepath.Join(work, "src"), map[string]string{"token": "T", "other": "O"})
	mustRun(t, "store", "--server="+s.addr, filepath.Join(work, "src"), "/data")
	mirror := filepath.Join(work, "mirror")
	writeFiles(t, mirror, map[string]string{"token/mine": "in the way"})
	pull := func() (string, int) {
		t.Helper()
		_, errOut, code := run(t, nil, "pull", "--once", "--server="+s.addr, "--store="+mirror, "/data")
		return errOut, code
	}

	errOut, code := pull()
	if code == 0 || !strings.Contains(lastLine(errOut), "/data/token (local directory in the way)") {
		t.Fatalf("pull --once with a directory in the way: exit %d, want non-zero and an error naming /data/token:\n%s", code, errOut)
	}
	if !regexp.MustCompile(`msg="batch applied" .*written=1 .*blocked=1`).MatchString(errOut) {
		t.Errorf("batch line does not count 1 written, 1 blocked:\n%s", errOut)
	}
	errOut, code = pull()
	if code == 0 {
		t.Fatalf("second pull --once, directory still in the way: exit 0, want the leaf still pending:\n%s", errOut)
	}
	if err := os.RemoveAll(filepath.Join(mirror, "token")); err != nil {
		t.Fatal(err)
	}
	if errOut, code = pull(); code != 0 {
		t.Fatalf("pull --once, way clear: exit %d:\n%s", code, errOut)
	}
	waitFile(t, filepath.Join(mirror, "token"), []byte("T"))

	// Drift: one file deleted, one edited.
	if err := os.Remove(filepath.Join(mirror, "token")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mirror, "other"), []byte("edited"), 0o600); err != nil {
		t.Fatal(err)
	}
	if errOut, code = pull(); code != 0 {
		t.Fatalf("pull --once after local edits: exit %d:\n%s", code, errOut)
	}
	for _, re := range []string{
		`msg="mirrored file drifted; rewriting it" .*path=/data/token .*problem=missing`,
		`msg="mirrored file drifted; rewriting it" .*path=/data/other .*problem="content changed`,
		`msg=repaired .*path=/data/token`,
		`msg=repaired .*path=/data/other`,
	} {
		if !regexp.MustCompile(re).MatchString(errOut) {
			t.Errorf("no log line matching %s:\n%s", re, errOut)
		}
	}
	waitFile(t, filepath.Join(mirror, "token"), []byte("T"))
	waitFile(t, filepath.Join(mirror, "other"), []byte("O"))
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// hugePageServer is a Watch server that sends every session one message
// of many nodes, as a hostile or buggy server may, then, once complete is
// set, a synced bookmark; until then it holds the stream open.
type hugePageServer struct {
	repldspb.UnimplementedRepldsServer
	nodes    []*repldspb.Node
	complete atomic.Bool
}

func (s *hugePageServer) Watch(req *repldspb.WatchRequest, stream grpc.ServerStreamingServer[repldspb.WatchResponse]) error {
	if err := stream.Send(&repldspb.WatchResponse{Nodes: s.nodes}); err != nil {
		return err
	}
	if !s.complete.Load() {
		<-stream.Context().Done()
		return nil
	}
	vec := &repldspb.Vector{Entries: []*repldspb.VectorEntry{{Origin: 1, Seq: uint64(len(s.nodes))}}}
	if err := stream.Send(&repldspb.WatchResponse{Bookmark: vec, Synced: true}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestE2E_PullStopsOnSIGTERM: SIGTERM while a pull applies one huge page
// stops it at once (the part of the page not yet committed is abandoned,
// its temporary files removed); the state stays consistent: the next
// --once completes the mirror, and no temporary file is left.
func TestE2E_PullStopsOnSIGTERM(t *testing.T) {
	const files = 10000
	fake := &hugePageServer{}
	for i := range files {
		fake.nodes = append(fake.nodes, &repldspb.Node{
			Path: fmt.Sprintf("/data/d%03d/f%05d", i%100, i), Version: uint64(i + 1), Origin: 1, Seq: uint64(i + 1), Data: []byte(fmt.Sprint(i)),
		})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The pull pings every 15s while it works on the page.
	gs := grpc.NewServer(grpc.MaxSendMsgSize(64<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}))
	repldspb.RegisterRepldsServer(gs, fake)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()

	work := t.TempDir()
	mirror := filepath.Join(work, "mirror")
	pull := start(t, "pull", "pull", "--server="+addr, "--store="+mirror, "/data")
	// Some of the page is on disk: the pull is in the middle of it.
	err = servertest.Eventually(context.Background(), 20*time.Second, func() error {
		entries, err := os.ReadDir(mirror)
		if err != nil || len(entries) == 0 {
			return fmt.Errorf("nothing mirrored yet (%v)", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	pull.kill(syscall.SIGTERM)
	stopped := time.Since(sent)
	t.Logf("pull stopped %v after SIGTERM", stopped.Round(time.Millisecond))
	if pull.err != nil {
		t.Errorf("pull after SIGTERM: %v, want exit 0", pull.err)
	}
	if stopped > time.Second {
		t.Errorf("pull took %v to stop after SIGTERM, want under a second", stopped)
	}

	fake.complete.Store(true)
	mustRun(t, "pull", "--once", "--server="+addr, "--store="+mirror, "/data")
	n := 0
	err = filepath.WalkDir(mirror, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(d.Name(), ".replds-tmp-") {
			t.Errorf("temporary file left: %s", p)
			return nil
		}
		n++
		return nil
	})
	if err != nil || n != files {
		t.Fatalf("mirror holds %d files (%v), want %d", n, err, files)
	}
	for _, i := range []int{0, files / 2, files - 1} {
		waitFile(t, filepath.Join(mirror, fmt.Sprintf("d%03d/f%05d", i%100, i)), []byte(fmt.Sprint(i)))
	}
}
