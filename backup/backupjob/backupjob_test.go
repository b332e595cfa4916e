package backupjob_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/backupjob"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/backup/target/targettest"
	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// cluster starts n servers that run backup jobs.
func cluster(t *testing.T, n int) *servertest.Cluster {
	return servertest.NewCluster(t, n, func(i int, cfg *server.Config) {
		cfg.JobKinds = func(s *server.Server) ([]jobs.Kind, error) {
			k, err := backupjob.New(backupjob.Config{Store: s.DB(), Allowed: s.Allowed, Metrics: s.JobMetrics(backupjob.Kind), RetryWait: 200 * time.Millisecond})
			return []jobs.Kind{k}, err
		}
	})
}

func store1(t *testing.T, c repldspb.RepldsClient, ws ...*repldspb.Write) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Store(ctx, &repldspb.StoreRequest{Writes: ws}); err != nil {
		t.Fatalf("Store: %v", err)
	}
}

func put(path, data string) *repldspb.Write { return &repldspb.Write{Path: path, Data: []byte(data)} }

// state returns the live nodes under /data of server i's store.
func state(t *testing.T, s *server.Server) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().Snapshot(context.Background(), store.ScanOptions{Prefix: "/data"}, func(_ store.Vector, page []store.Node) error {
		for _, n := range page {
			if !n.Deleted {
				out[n.Path] = string(n.Data)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rebuilt returns the live nodes under /data at the end of the newest
// chain in the target.
func rebuilt(t *testing.T, tgt target.Target) (map[string]string, []backup.Manifest) {
	t.Helper()
	ctx := context.Background()
	all, err := backup.List(ctx, tgt, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := backup.Latest(all)
	if err != nil {
		return nil, all
	}
	out := map[string]string{}
	err = backup.Rebuild(ctx, tgt, chain, backup.ReadOptions{Prefix: "/data"}, func(n store.Node) error {
		if !n.Deleted {
			out[n.Path] = string(n.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := backup.Verify(ctx, tgt, chain, nil)
	if err != nil || !v.OK || !v.Root {
		t.Errorf("Verify(newest chain) = %+v, %v; want OK with the root checked", v, err)
	}
	return out, all
}

// TestBackupJob_ScheduleTakeoverRetention: a job defined on one server is
// run by one; it makes a full backup, then incrementals as writes go on
// (nothing when nothing changed), each chain restoring to the store's
// state; when the runner stops, another takes over and the chain goes on;
// retention keeps the newest fulls.
func TestBackupJob_ScheduleTakeoverRetention(t *testing.T) {
	c := cluster(t, 3)
	dir := t.TempDir()
	tgt, err := target.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	store1(t, c.Client(0), put("/data/a", "1"), put("/data/b", "1"), put("/other/x", "not backed up"))
	spec := fmt.Sprintf(`{"prefix":"/data","target":"file://%s","schedule":"every 1s","full":"every 3","retain":{"fulls":2}}`, dir)
	store1(t, c.Client(1), put(jobs.DefPath("backup", "nightly"), spec))

	waitBackup := func(what string, cond func(all []backup.Manifest, got map[string]string) error) {
		t.Helper()
		c.Wait(20*time.Second, what, func() error {
			got, all := rebuilt(t, tgt)
			return cond(all, got)
		})
	}
	waitBackup("a full backup of /data", func(all []backup.Manifest, got map[string]string) error {
		if len(all) == 0 || !maps.Equal(got, state(t, c.Server(0))) {
			return fmt.Errorf("%d backups, rebuilt %v", len(all), got)
		}
		return nil
	})
	store1(t, c.Client(2), put("/data/a", "2"), &repldspb.Write{Path: "/data/b", Delete: true}, put("/data/c", "1"))
	waitBackup("an incremental with the changes", func(all []backup.Manifest, got map[string]string) error {
		want := map[string]string{"/data/a": "2", "/data/c": "1"}
		if !maps.Equal(got, want) {
			return fmt.Errorf("rebuilt %v, want %v", got, want)
		}
		if last := all[len(all)-1]; last.Kind != backup.KindIncremental || last.Nodes != 3 {
			return fmt.Errorf("newest backup %s %s of %d nodes, want an incremental of 3", last.ID, last.Kind, last.Nodes)
		}
		return nil
	})

	// The runner stops: another server takes over and goes on.
	runner := -1
	for i := range c.N() {
		if len(c.Server(i).JobsRunning()) == 1 {
			runner = i
		}
	}
	if runner < 0 {
		t.Fatal("no server runs the job")
	}
	c.Stop(runner)
	alive := (runner + 1) % 3
	store1(t, c.Client(alive), put("/data/d", "after takeover"))
	waitBackup("a backup by the new runner", func(all []backup.Manifest, got map[string]string) error {
		if got["/data/d"] != "after takeover" {
			return fmt.Errorf("rebuilt %v lacks /data/d", got)
		}
		if all[len(all)-1].Runner == c.Server(alive).Name() || all[len(all)-1].Runner == c.Server((alive+1)%3).Name() {
			return nil
		}
		return fmt.Errorf("newest backup by %s", all[len(all)-1].Runner)
	})

	// Keep writing: fulls come every 3 incrementals and retention keeps 2.
	statusOf := func() (jobs.Status, backupjob.Detail) {
		t.Helper()
		n, err := c.Server(alive).DB().Get(jobs.StatusPath("backup", "nightly"))
		if err != nil {
			t.Fatal(err)
		}
		st, err := jobs.ParseStatus(n.Data)
		if err != nil {
			t.Fatal(err)
		}
		var d backupjob.Detail
		if err := json.Unmarshal(st.Detail, &d); err != nil {
			t.Fatal(err)
		}
		return st, d
	}
	i := 0
	c.Wait(60*time.Second, "retention deleting a chain", func() error {
		i++
		store1(t, c.Client(alive), put("/data/n", fmt.Sprint(i)))
		if _, d := statusOf(); d.Deleted == 0 {
			return fmt.Errorf("nothing deleted yet, latest %s", d.Latest)
		}
		return nil
	})
	waitBackup("two fulls and the last write", func(all []backup.Manifest, got map[string]string) error {
		fulls := 0
		for _, m := range all {
			if m.Kind == backup.KindFull {
				fulls++
			}
		}
		if fulls != 2 {
			return fmt.Errorf("%d fulls kept, want 2", fulls)
		}
		if got["/data/n"] != fmt.Sprint(i) {
			return fmt.Errorf("rebuilt /data/n = %q, want %d", got["/data/n"], i)
		}
		return nil
	})
	if st, d := statusOf(); st.Runs < 4 || st.Failures != 0 || st.LastSuccess.IsZero() || d.Latest == "" {
		t.Errorf("status %+v detail %+v: want runs carried over, no failures", st, d)
	}
	// The runner's metrics count its runs.
	now := alive
	for i := range c.N() {
		if s := c.Server(i); s != nil && len(s.JobsRunning()) == 1 {
			now = i
		}
	}
	m := func(name string, kv ...string) float64 {
		return servertest.Gathered(t, c.Server(now), name, append([]string{"kind", "backup", "job", "nightly"}, kv...)...)
	}
	ok, failed, last := m("replds_job_runs_total", "result", "ok"), m("replds_job_runs_total", "result", "error"), m("replds_job_last_success_timestamp_seconds")
	if ok < 1 || last == 0 || failed != 0 {
		t.Errorf("job metrics of the runner: %v ok runs, %v failed, last success %v; want ok runs, a last success, no errors", ok, failed, last)
	}
}

// TestBackupJob_S3StopMidBackup: backups go to a real S3 server; the
// runner stopped in the middle of a full backup leaves no backup listed
// and nothing behind, and the next runner makes it whole.
func TestBackupJob_S3StopMidBackup(t *testing.T) {
	url := targettest.S3URL(t)
	c := cluster(t, 2)
	const n, batch = 40000, 1000
	data := bytes.Repeat([]byte("k"), 1024)
	for i := 0; i < n; i += batch {
		var ws []*repldspb.Write
		for j := i; j < i+batch; j++ {
			ws = append(ws, &repldspb.Write{Path: fmt.Sprintf("/data/%05d", j), Data: data})
		}
		store1(t, c.Client(0), ws...)
	}
	c.WaitConverged(30 * time.Second)
	store1(t, c.Client(1), put(jobs.DefPath("backup", "nightly"), fmt.Sprintf(`{"prefix":"/data","target":%q,"schedule":"@yearly"}`, url)))

	// Catch the runner in the middle of its first full backup.
	runner := -1
	c.Wait(30*time.Second, "a full backup in progress", func() error {
		for i := range c.N() {
			n, err := c.Server(i).DB().Get(jobs.StatusPath("backup", "nightly"))
			if err != nil {
				continue
			}
			if st, err := jobs.ParseStatus(n.Data); err == nil && st.State == jobs.StateRunning && st.Current != nil {
				for j := range c.N() {
					if c.Server(j).Name() == st.Runner {
						runner = j
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no run in progress")
	})
	c.Stop(runner)
	tgt, err := target.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	// A backup that raced to completion may be listed; a part of one never.
	all, err := backup.List(context.Background(), tgt, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.Nodes != n {
			t.Fatalf("after the runner stopped mid-backup, %s is listed with %d nodes, want %d", m.ID, m.Nodes, n)
		}
	}
	other := 1 - runner
	c.Wait(60*time.Second, "a whole backup by the other server", func() error {
		all, err := backup.List(context.Background(), tgt, "nightly")
		if err != nil {
			return err
		}
		if len(all) == 0 || all[len(all)-1].Runner != c.Server(other).Name() {
			return fmt.Errorf("%d backups", len(all))
		}
		if all[len(all)-1].Nodes != n {
			return fmt.Errorf("backup of %d nodes, want %d", all[len(all)-1].Nodes, n)
		}
		return nil
	})
	got, _ := rebuilt(t, tgt)
	if len(got) != n {
		t.Errorf("rebuilt %d nodes, want %d", len(got), n)
	}
	if left, err := backup.Incomplete(context.Background(), tgt, "nightly"); err != nil || len(left) != 0 {
		t.Errorf("incomplete backups left behind: %v, %v", left, err)
	}
}
