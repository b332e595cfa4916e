package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/server/servertest"
)

// listBackups runs `backup list --json` on a target.
func listBackups(t *testing.T, targetURL, job string) []backup.Manifest {
	t.Helper()
	out := mustRun(t, "backup", "list", "--target="+targetURL, "--job="+job, "--json")
	var all []backup.Manifest
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("backup list --json: %v: %s", err, out)
	}
	return all
}

// waitBackupAfter waits until job has a complete backup made after t0 and
// returns the list.
func waitBackupAfter(t *testing.T, targetURL, job string, t0 time.Time) []backup.Manifest {
	t.Helper()
	var all []backup.Manifest
	err := servertest.Eventually(context.Background(), 30*time.Second, func() error {
		all = listBackups(t, targetURL, job)
		if len(all) == 0 || !all[len(all)-1].Time.After(t0) {
			return fmt.Errorf("no backup after %v yet (%d backups)", t0, len(all))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func catOr(t *testing.T, addr, path string) string {
	t.Helper()
	out, _, code := run(t, nil, "cat", "--server="+addr, path)
	if code != 0 {
		return "<absent>"
	}
	return out
}

// TestE2E_BackupRestore: a backup job defined with the CLI makes a full
// backup and incrementals as writes go on; a deleted subtree comes back
// from the latest; a subtree restores under another prefix as it was at a
// time between two backups; a dry run changes nothing; a fresh cluster is
// rebuilt in merge mode, and provisioned with --restore-from; a flipped
// byte fails verification and stops a restore before any write.
func TestE2E_BackupRestore(t *testing.T) {
	servers := startCluster(t, 3)
	addr := "--server=" + servers[0].addr
	dir := t.TempDir()
	tgt := "file://" + dir
	put := func(path, data string) {
		t.Helper()
		if _, errOut, code := run(t, strings.NewReader(data), "store", "--server="+servers[1].addr, "-", path); code != 0 {
			t.Fatalf("store %s: %s", path, errOut)
		}
	}
	put("/app/a", "a1")
	put("/app/sub/x", "x1")
	put("/app/sub/y", "y1")

	t0 := time.Now().UTC()
	out := mustRun(t, "backup", "create", "nightly", addr, "--prefix=/app", "--target="+tgt, "--schedule=every 1s", "--full=every 100")
	if !strings.Contains(out, "backup job nightly defined") {
		t.Errorf("backup create said %q", out)
	}
	if _, errOut, code := run(t, nil, "backup", "create", "nightly", addr, "--target="+tgt, "--schedule=every 1s"); code == 0 || !strings.Contains(errOut, "exists") {
		t.Errorf("second create: exit %d, %s; want a refusal saying it exists", code, errOut)
	}
	if _, errOut, code := run(t, nil, "backup", "create", "bad", addr, "--target="+tgt, "--schedule=every 1 fortnight"); code == 0 || !strings.Contains(errOut, `"schedule"`) {
		t.Errorf("bad schedule: exit %d, %s; want an error naming the field", code, errOut)
	}
	all := waitBackupAfter(t, tgt, "nightly", t0)
	if all[0].Kind != backup.KindFull {
		t.Fatalf("first backup is %s, want full", all[0].Kind)
	}

	between := time.Now().UTC()
	time.Sleep(10 * time.Millisecond) // the write below is after `between`, to the millisecond
	put("/app/a", "a2")
	waitBackupAfter(t, tgt, "nightly", time.Now().UTC())

	// Stop the schedule, then lose a subtree.
	mustRun(t, "backup", "pause", "nightly", addr)
	err := servertest.Eventually(context.Background(), 10*time.Second, func() error {
		if status := mustRun(t, "backup", "status", "nightly", addr); !strings.Contains(status, "paused") {
			return fmt.Errorf("backup status after pause:\n%s", status)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	mustRun(t, "rm", addr, "-r", "/app/sub")
	put("/app/new", "created after the backup")

	// A dry run says what it would do and does nothing.
	out = mustRun(t, "restore", addr, "--from="+tgt, "--job=nightly", "--dry-run")
	for _, want := range []string{"+ /app/sub/x", "+ /app/sub/y", "- /app/new", "would restore"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if got := catOr(t, servers[2].addr, "/app/sub/x"); got != "<absent>" {
		t.Errorf("after a dry run /app/sub/x = %q", got)
	}

	// Only the subtree comes back; /app/new, outside it, stays.
	out = mustRun(t, "restore", addr, "--from="+tgt, "--job=nightly", "--prefix=/app/sub")
	if !strings.Contains(out, "2 added, 0 changed, 0 deleted") {
		t.Errorf("restore --prefix=/app/sub said %q", out)
	}
	for p, want := range map[string]string{"/app/sub/x": "x1", "/app/sub/y": "y1", "/app/new": "created after the backup", "/app/a": "a2"} {
		if got := catOr(t, servers[2].addr, p); got != want {
			t.Errorf("after restore of /app/sub: %s = %q, want %q", p, got, want)
		}
	}

	// As it was between the two backups, side by side under /old.
	mustRun(t, "restore", addr, "--from="+tgt, "--job=nightly", "--at="+between.Format(time.RFC3339Nano), "--to=/old")
	if got := catOr(t, servers[0].addr, "/old/a"); got != "a1" {
		t.Errorf("restore --at between the backups --to=/old: /old/a = %q, want a1", got)
	}
	if got := catOr(t, servers[0].addr, "/app/a"); got != "a2" {
		t.Errorf("restore --to changed /app/a to %q", got)
	}

	// A lost cluster rebuilt in merge mode keeps the original versions;
	// every member takes the nodes at once.
	freshCluster := startCluster(t, 2)
	fresh := freshCluster[0]
	waitStatus(t, fresh.addr, "two members", func(out string, code int) error {
		if strings.Count(out, "alive") < 2 {
			return fmt.Errorf("members: %s", out)
		}
		return nil
	})
	out, errOut, code := run(t, nil, "restore", "--server="+fresh.addr, "--from="+tgt, "--job=nightly", "--merge")
	if code != 0 || !strings.Contains(out, "nodes changed") || !strings.Contains(errOut, "importing into 2 servers") {
		t.Errorf("restore --merge: exit %d, said %q, %q", code, out, errOut)
	}
	for _, s := range freshCluster {
		if got := catOr(t, s.addr, "/app/a"); got != "a2" {
			t.Errorf("merged /app/a on %s = %q, want a2", s.name, got)
		}
	}
	out = mustRun(t, "restore", "--server="+fresh.addr, "--from="+tgt, "--job=nightly", "--merge")
	if !strings.Contains(out, ": 0 nodes changed") {
		t.Errorf("second merge changed something: %q", out)
	}

	// A new server provisions itself from the backup, once.
	prov := start(t, "prov", "server", "--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0", "--data-dir="+t.TempDir(),
		"--gossip-profile=local", "--name=prov", "--restore-from="+tgt, "--restore-job=nightly")
	m := prov.waitLine(startedRE)
	prov.waitLine(regexp.MustCompile(`restore-from: done`))
	if got := catOr(t, m[1], "/app/sub/y"); got != "y1" {
		t.Errorf("provisioned /app/sub/y = %q, want y1", got)
	}

	// A flipped byte: verification names the file, restore writes nothing.
	all = listBackups(t, tgt, "nightly")
	last := all[len(all)-1]
	file := filepath.Join(dir, "nightly", last.ID, last.Files[0].Name)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run(t, nil, "backup", "verify", "--target="+tgt, "--job=nightly")
	if code == 0 || !strings.Contains(errOut, last.Files[0].Name) {
		t.Errorf("verify of a flipped byte: exit %d, %s; want a failure naming %s", code, errOut, last.Files[0].Name)
	}
	mustRun(t, "rm", addr, "/app/a")
	if _, errOut, code := run(t, nil, "restore", addr, "--from="+tgt, "--job=nightly"); code == 0 || !strings.Contains(errOut, "nothing written") {
		t.Errorf("restore of a corrupt backup: exit %d, %s", code, errOut)
	}
	if got := catOr(t, servers[0].addr, "/app/a"); got != "<absent>" {
		t.Errorf("a corrupt backup was restored: /app/a = %q", got)
	}
}

// TestE2E_BackupEncrypted: backups encrypted to a recipient restore with
// its identity and fail clearly without it; the servers never see the key.
func TestE2E_BackupEncrypted(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	addr := "--server=" + s.addr
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "backup.key")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tgt := "file://" + t.TempDir()
	if _, errOut, code := run(t, strings.NewReader("s3cr3t"), "store", addr, "-", "/tls/key"); code != 0 {
		t.Fatal(errOut)
	}
	t0 := time.Now().UTC()
	mustRun(t, "backup", "create", "enc", addr, "--prefix=/tls", "--target="+tgt, "--schedule=every 1s", "--encrypt-to="+id.Recipient().String())
	all := waitBackupAfter(t, tgt, "enc", t0)
	if !all[0].Encrypted {
		t.Fatalf("backup not marked encrypted: %+v", all[0])
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimPrefix(tgt, "file://"), "enc", all[0].ID, all[0].Files[0].Name))
	if err != nil || bytes.Contains(raw, []byte("s3cr3t")) {
		t.Fatalf("node file readable without the key (%v)", err)
	}
	mustRun(t, "backup", "pause", "enc", addr)
	mustRun(t, "rm", addr, "/tls/key")
	if _, errOut, code := run(t, nil, "restore", addr, "--from="+tgt, "--job=enc"); code == 0 || !strings.Contains(errOut, "--identity") {
		t.Errorf("restore without identity: exit %d, %s; want an error asking for --identity", code, errOut)
	}
	mustRun(t, "restore", addr, "--from="+tgt, "--job=enc", "--identity="+idFile)
	if got := catOr(t, s.addr, "/tls/key"); got != "s3cr3t" {
		t.Errorf("restored /tls/key = %q", got)
	}
	out := mustRun(t, "backup", "verify", "--target="+tgt, "--job=enc", "--identity="+idFile)
	if !strings.Contains(out, "content root") {
		t.Errorf("verify with identity said %q", out)
	}

	// Deleting the job keeps its backups; deleting it again is "not found".
	if out := mustRun(t, "backup", "rm", "enc", addr); !strings.Contains(out, "backup job enc deleted; its backups stay in the target") {
		t.Errorf("backup rm said %q", out)
	}
	if _, errOut, code := run(t, nil, "backup", "rm", "enc", addr); code != 3 {
		t.Errorf("second backup rm: exit %d, %s; want 3 (not found)", code, errOut)
	}
	if all := listBackups(t, tgt, "enc"); len(all) == 0 {
		t.Error("backup rm deleted the backups")
	}
}

// TestE2E_BackupRunnerKilled: the server running a full backup is killed
// (SIGKILL) in the middle of it: the backup it was writing is never
// listed, and the other server makes a whole one.
func TestE2E_BackupRunnerKilled(t *testing.T) {
	servers := startCluster(t, 2)
	tree := t.TempDir()
	const n = 40000
	data := bytes.Repeat([]byte("s"), 2048)
	for i := range n {
		dir := filepath.Join(tree, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "store", "-q", "--server="+servers[0].addr, tree, "/big")
	dir := t.TempDir()
	tgt := "file://" + dir
	mustRun(t, "backup", "create", "big", "--server="+servers[1].addr, "--prefix=/big", "--target="+tgt, "--schedule=@yearly")

	// Catch the runner while it writes; should a run end before it is
	// caught, ask for another full one.
	catch := func() (*serverProc, error) {
		var runner *serverProc
		err := servertest.Eventually(context.Background(), 15*time.Second, func() error {
			out, _, _ := run(t, nil, "backup", "status", "big", "--json", "--server="+servers[0].addr)
			var sts []jobStatus
			if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
				return fmt.Errorf("status %q: %v", out, err)
			}
			if sts[0].State != "running" {
				return fmt.Errorf("state %s", sts[0].State)
			}
			for _, s := range servers {
				if s.name == sts[0].Runner {
					runner = s
				}
			}
			return nil
		})
		return runner, err
	}
	var runner *serverProc
	for attempt := 0; runner == nil; attempt++ {
		var err error
		if runner, err = catch(); err != nil {
			if attempt == 3 {
				t.Fatalf("no backup caught running: %v", err)
			}
			mustRun(t, "backup", "run", "big", "--full", "--server="+servers[0].addr)
		}
	}
	before := len(listBackups(t, tgt, "big"))
	runner.kill(syscall.SIGKILL)
	other := servers[0]
	if other == runner {
		other = servers[1]
	}
	// The other server takes the job over and, the run it was in never
	// having completed, makes a whole backup of its own.
	var all []backup.Manifest
	err := servertest.Eventually(context.Background(), 60*time.Second, func() error {
		all = listBackups(t, tgt, "big")
		if last := len(all) - 1; last < before || all[last].Nodes != n || all[last].Runner != other.name {
			return fmt.Errorf("backups %+v", all)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Whatever is listed is whole: every backup verifies.
	for _, m := range all {
		mustRun(t, "backup", "verify", "--target="+tgt, "--job=big", "--id="+m.ID)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d backup directories in the target, %d complete (retention removes the killed run's after its grace)", len(entries), len(all))
}
