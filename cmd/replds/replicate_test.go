package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/replds/replds/replicate"
	"github.com/replds/replds/server/servertest"
)

// replicateStatusJSON runs `replicate status NAME --json` on addr.
func replicateStatusJSON(t *testing.T, addr, name string) (replicateStatus, error) {
	t.Helper()
	out, errOut, code := run(t, nil, "replicate", "status", "--server="+addr, name, "--json")
	if code != 0 {
		return replicateStatus{}, fmt.Errorf("replicate status: exit %d: %s", code, errOut)
	}
	var sts []replicateStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		return replicateStatus{}, fmt.Errorf("replicate status --json: %v: %s", err, out)
	}
	return sts[0], nil
}

// TestE2E_Replicate: with real processes, a replication job created with
// the CLI copies a prefix from one cluster to another under a new prefix,
// reports its status, stops gracefully (everything the source held when
// asked is there), and starts again from its token.
func TestE2E_Replicate(t *testing.T) {
	src := startServer(t, "src0", "127.0.0.1:0", t.TempDir())
	dst := startCluster(t, 2)
	put := func(path, data string) {
		t.Helper()
		if _, errOut, code := run(t, strings.NewReader(data), "store", "--server="+src.addr, "-", path); code != 0 {
			t.Fatalf("store %s: %s", path, errOut)
		}
	}
	put("/app/a", "a1")
	put("/app/skip/x", "no")
	out := mustRun(t, "replicate", "create", "mirror", "--server="+dst[0].addr, "--source="+src.addr,
		"--source-prefix=/app", "--dest-prefix=/site-a", "--exclude=/app/skip")
	if !strings.Contains(out, "replication job mirror defined") {
		t.Errorf("create said %q", out)
	}
	if _, errOut, code := run(t, nil, "replicate", "create", "bad", "--server="+dst[0].addr, "--source=nohost"); code == 0 || !strings.Contains(errOut, `"source"`) {
		t.Errorf("create with a bad source: exit %d, %q; want a failure naming the field", code, errOut)
	}
	wait := func(what string, cond func() error) {
		t.Helper()
		if err := servertest.Eventually(context.Background(), 30*time.Second, cond); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	wait("the copy on the second destination server", func() error {
		if got := catOr(t, dst[1].addr, "/site-a/a"); got != "a1" {
			return fmt.Errorf("/site-a/a = %q", got)
		}
		return nil
	})
	if got := catOr(t, dst[1].addr, "/site-a/skip/x"); got != "<absent>" {
		t.Errorf("excluded /site-a/skip/x = %q, want absent", got)
	}
	wait("status following", func() error {
		st, err := replicateStatusJSON(t, dst[1].addr, "mirror")
		if err != nil {
			return err
		}
		if st.State != replicate.StateFollowing || st.Detail.Source != src.addr || st.Detail.LagChanges != 0 || st.Runner == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if out := mustRun(t, "replicate", "status", "--server="+dst[0].addr); !strings.Contains(out, "mirror") || !strings.Contains(out, "following") {
		t.Errorf("status table:\n%s", out)
	}

	for i := range 20 {
		put(fmt.Sprintf("/app/n%d", i), "v")
	}
	out = mustRun(t, "replicate", "stop", "mirror", "--server="+dst[0].addr, "--timeout=30s")
	if !strings.Contains(out, "stopped") {
		t.Errorf("stop said %q", out)
	}
	for i := range 20 {
		if got := catOr(t, dst[0].addr, fmt.Sprintf("/site-a/n%d", i)); got != "v" {
			t.Errorf("after stop /site-a/n%d = %q, want v", i, got)
		}
	}
	st, err := replicateStatusJSON(t, dst[0].addr, "mirror")
	if err != nil || st.State != replicate.StateStopped {
		t.Fatalf("status after stop: %+v, %v", st, err)
	}

	put("/app/after", "later")
	mustRun(t, "replicate", "start", "mirror", "--server="+dst[1].addr)
	wait("the write made while stopped", func() error {
		if got := catOr(t, dst[0].addr, "/site-a/after"); got != "later" {
			return fmt.Errorf("/site-a/after = %q", got)
		}
		return nil
	})
	wait("following again without a new copy", func() error {
		st2, err := replicateStatusJSON(t, dst[0].addr, "mirror")
		if err != nil {
			return err
		}
		if st2.State != replicate.StateFollowing || st2.Detail.Received != st.Detail.Received+1 {
			return fmt.Errorf("status %+v, want following with one more node received than %d", st2, st.Detail.Received)
		}
		return nil
	})
}
