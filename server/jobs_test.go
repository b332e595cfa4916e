package server_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
)

// TestJobs_OneRunnerAndTakeover: a job defined through any server runs on
// exactly one, which publishes its status; requests reach it; when the
// runner stops another takes over, carrying the status on; a deleted job
// runs nowhere.
func TestJobs_OneRunnerAndTakeover(t *testing.T) {
	k := &testKind{}
	c := servertest.NewCluster(t, 3, func(i int, cfg *server.Config) {
		cfg.JobKinds = func(*server.Server) ([]jobs.Kind, error) { return []jobs.Kind{k}, nil }
	})
	runners := func() (names []string, idx []int) {
		for i := range c.N() {
			if s := c.Server(i); s != nil {
				for range s.JobsRunning() {
					names, idx = append(names, s.Name()), append(idx, i)
				}
			}
		}
		return names, idx
	}
	statusOf := func(i int) (jobs.Status, error) {
		n, err := c.Server(i).DB().Get(jobs.StatusPath("test", "a"))
		if err != nil {
			return jobs.Status{}, err
		}
		return jobs.ParseStatus(n.Data)
	}
	put(t, c.Client(1), jobs.DefPath("test", "a"), `{"prefix":"/data"}`)
	var first int
	c.Wait(10*time.Second, "one runner and its status on every server", func() error {
		names, idx := runners()
		if len(names) != 1 {
			return fmt.Errorf("runners %v, want one", names)
		}
		first = idx[0]
		for i := range c.N() {
			st, err := statusOf(i)
			if err != nil || st.Runner != names[0] || st.Runs != 1 {
				return fmt.Errorf("server %d: status %+v, %v; want runner %s, runs 1", i, st, err, names[0])
			}
		}
		return nil
	})

	_, err := c.Client(2).Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: jobs.RequestPath("test", "a"), Data: []byte("bad")}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad request = %v, want InvalidArgument", err)
	}
	put(t, c.Client(2), jobs.RequestPath("test", "a"), "run")
	c.Wait(10*time.Second, "the request at the runner", func() error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if len(k.requests) != 1 || k.requests[0] != "run" {
			return fmt.Errorf("requests %q, want [run]", k.requests)
		}
		return nil
	})

	c.Stop(first)
	other := (first + 1) % 3
	c.Wait(15*time.Second, "another runner", func() error {
		names, idx := runners()
		if len(names) != 1 || idx[0] == first {
			return fmt.Errorf("runners %v, want one other than server %d", names, first)
		}
		st, err := statusOf(other)
		if err != nil || st.Runner != names[0] || st.Runs != 2 {
			return fmt.Errorf("status %+v, %v; want runner %s, runs 2", st, err, names[0])
		}
		return nil
	})

	_, err = c.Client(other).Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: jobs.DefPath("test", "a"), Delete: true}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(10*time.Second, "no runner", func() error {
		if names, _ := runners(); len(names) != 0 {
			return fmt.Errorf("runners %v after delete", names)
		}
		return nil
	})
}
