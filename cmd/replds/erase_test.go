package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replds/replds/server/servertest"
)

// TestE2E_DeletedSecretLeavesTheFile: a server with --erase-interval
// compacts its database so that a deleted value is no longer in its
// bytes, and serves the rest as before, also after a restart.
func TestE2E_DeletedSecretLeavesTheFile(t *testing.T) {
	const canary = "CANARY-e2e-91d7a3f0-deleted-secret"
	dir := t.TempDir()
	args := []string{"server", "--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0", "--data-dir=" + dir,
		"--gossip-profile=local", "--name=solo", "--erase-interval=300ms"}
	p := start(t, "solo", args...)
	addr := p.waitLine(startedRE)[1]
	db := filepath.Join(dir, "replds.db")
	for path, data := range map[string]string{"/s/key": canary, "/s/other": "kept"} {
		if _, errOut, code := run(t, strings.NewReader(data), "store", "--server="+addr, "-", path); code != 0 {
			t.Fatalf("store %s: %s", path, errOut)
		}
	}
	if raw, err := os.ReadFile(db); err != nil || !bytes.Contains(raw, []byte(canary)) {
		t.Fatalf("canary not in %s after the store (%v)", db, err)
	}
	mustRun(t, "rm", "--server="+addr, "/s/key")
	err := servertest.Eventually(context.Background(), 10*time.Second, func() error {
		raw, err := os.ReadFile(db)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, []byte(canary)) {
			return errors.New("deleted canary still in replds.db")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Killed right after, the server has everything on the compacted file.
	p.kill(syscall.SIGKILL)
	args[1] = "--addr=" + addr
	start(t, "solo", args...).waitLine(startedRE)
	if got := mustRun(t, "cat", "--server="+addr, "/s/other"); got != "kept" {
		t.Errorf("cat /s/other = %q, want kept", got)
	}
	if _, _, code := run(t, nil, "cat", "--server="+addr, "/s/key"); code == 0 {
		t.Errorf("cat /s/key succeeded after its delete")
	}
}
