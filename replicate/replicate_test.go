package replicate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/replicate"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// withJobs makes the servers run replication jobs, with short intervals.
func withJobs() servertest.Option {
	return func(i int, cfg *server.Config) {
		cfg.JobKinds = func(s *server.Server) ([]jobs.Kind, error) {
			m, err := replicate.NewMetrics(s.Registry())
			if err != nil {
				return nil, err
			}
			k, err := replicate.New(replicate.Config{
				Metrics:        m,
				Writer:         s.Writer(),
				Vector:         s.DB().Vector,
				Walk:           s.DB().Walk,
				Allowed:        s.Allowed,
				ClusterOrigins: s.ClusterOrigins,
				RetryWait:      200 * time.Millisecond,
				PublishEvery:   50 * time.Millisecond,
				RefreshEvery:   500 * time.Millisecond,
				LagEvery:       100 * time.Millisecond,
				AdvanceEvery:   100 * time.Millisecond,
				MaxBackoff:     500 * time.Millisecond,
				IdleTimeout:    2 * time.Second,
			})
			return []jobs.Kind{k}, err
		}
	}
}

// quiet sends the servers' logs nowhere (benchmarks).
func quiet() servertest.Option {
	return func(i int, cfg *server.Config) { cfg.Logger = slog.New(slog.DiscardHandler) }
}

// waitReady waits until every server of c is ready, so that the runner a
// job gets is the one it keeps.
func waitReady(t testing.TB, c *servertest.Cluster) {
	t.Helper()
	c.Wait(20*time.Second, "every server ready", func() error {
		for i := range c.N() {
			if ok, why := c.Server(i).Ready(); !ok {
				return fmt.Errorf("server %d: %s", i, why)
			}
		}
		return nil
	})
}

func addrs(c *servertest.Cluster) []string {
	var out []string
	for i := range c.N() {
		out = append(out, c.Addr(i))
	}
	return out
}

func define(t testing.TB, c *servertest.Cluster, name string, spec replicate.Spec) {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	c.Store(0, servertest.Put(jobs.DefPath(replicate.Kind, name), string(data)))
}

func request(t *testing.T, c *servertest.Cluster, name, action string) {
	t.Helper()
	c.Store(0, servertest.Put(jobs.RequestPath(replicate.Kind, name), fmt.Sprintf(`{"action":%q}`, action)))
}

// status returns the job's status as server i holds it.
func jobStatus(c *servertest.Cluster, i int, name string) (jobs.Status, replicate.Detail, error) {
	var d replicate.Detail
	n, err := c.Server(i).DB().Get(jobs.StatusPath(replicate.Kind, name))
	if err != nil {
		return jobs.Status{}, d, err
	}
	st, err := jobs.ParseStatus(n.Data)
	if err != nil {
		return st, d, err
	}
	err = json.Unmarshal(st.Detail, &d)
	return st, d, err
}

// runner returns the index of the server running the job, -1 if none.
func runner(c *servertest.Cluster) int {
	for i := range c.N() {
		if s := c.Server(i); s != nil && len(s.JobsRunning()) > 0 {
			return i
		}
	}
	return -1
}

// live returns the live nodes under prefix on server i: path -> data.
func live(t testing.TB, s *server.Server, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().Snapshot(context.Background(), store.ScanOptions{Prefix: prefix}, func(_ store.Vector, page []store.Node) error {
		for _, n := range page {
			if !n.Deleted && !nodepath.IsReserved(n.Path) {
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

// stamps returns path -> version/origin of every node (tombstones too)
// under prefix on server i.
func stamps(t *testing.T, s *server.Server, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().Snapshot(context.Background(), store.ScanOptions{Prefix: prefix}, func(_ store.Vector, page []store.Node) error {
		for _, n := range page {
			out[n.Path] = fmt.Sprintf("%d/%x/%v/%s", n.Version, n.Origin, n.Deleted, n.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitHolds waits until every running server of c holds exactly want
// under prefix.
func waitHolds(t testing.TB, c *servertest.Cluster, prefix string, want map[string]string) {
	t.Helper()
	c.Wait(20*time.Second, "the replicated nodes on every destination server", func() error {
		for i := range c.N() {
			if s := c.Server(i); s != nil {
				if got := live(t, s, prefix); !maps.Equal(got, want) {
					return fmt.Errorf("server %d holds %d nodes under %s, want %d (%v)", i, len(got), prefix, len(want), diff(got, want))
				}
			}
		}
		return nil
	})
}

func diff(got, want map[string]string) string {
	var out []string
	for p, v := range want {
		if got[p] != v {
			out = append(out, fmt.Sprintf("%s=%q want %q", p, got[p], v))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, p+" extra")
		}
	}
	slices.Sort(out)
	if len(out) > 5 {
		out = append(out[:5], "...")
	}
	return strings.Join(out, ", ")
}

// waitState waits for the job's status, as server i holds it, to satisfy ok.
func waitState(t *testing.T, c *servertest.Cluster, i int, name, what string, ok func(jobs.Status, replicate.Detail) bool) (jobs.Status, replicate.Detail) {
	t.Helper()
	var st jobs.Status
	var d replicate.Detail
	c.Wait(20*time.Second, what, func() error {
		var err error
		st, d, err = jobStatus(c, i, name)
		if err != nil {
			return err
		}
		if !ok(st, d) {
			return fmt.Errorf("status %s, error %q, detail %+v", st.State, st.Error, d)
		}
		return nil
	})
	return st, d
}

func caughtUp(st jobs.Status, d replicate.Detail) bool {
	return st.State == replicate.StateFollowing && d.LagChanges == 0 && d.Token != nil
}

// TestReplicate_PrefixRewriteExcludesDeletes: an initial copy of a prefix
// lands under the destination prefix on every destination server, without
// the excluded subtree or anything outside the prefix; live writes and
// deletes follow; the status says following, the source in use and no lag.
func TestReplicate_PrefixRewriteExcludesDeletes(t *testing.T) {
	src := servertest.NewCluster(t, 2)
	dst := servertest.NewCluster(t, 3, withJobs())
	src.Store(0, servertest.Put("/src/a", "1"), servertest.Put("/src/b/c", "2"), servertest.Put("/src/skip/x", "no"),
		servertest.Put("/other/y", "no"), servertest.Put("/srcx", "no"))
	src.Store(1, servertest.Put("/src/d", "3"), servertest.Put("/src/gone", "4"))
	// The delete goes to the other server once it holds the write (a
	// delete of a path a server does not hold yet deletes nothing).
	src.WaitConverged(10 * time.Second)
	src.Store(0, servertest.Delete("/src/gone"))
	dst.Store(1, servertest.Put("/dst/local", "mine"))
	define(t, dst, "mirror", replicate.Spec{Source: addrs(src), SourcePrefix: "/src", DestPrefix: "/dst", Exclude: []string{"/src/skip"}})

	want := map[string]string{"/dst/a": "1", "/dst/b/c": "2", "/dst/d": "3", "/dst/local": "mine"}
	waitHolds(t, dst, "/", want)
	_, d := waitState(t, dst, 2, "mirror", "following, caught up", caughtUp)
	if !slices.Contains(addrs(src), d.Source) {
		t.Errorf("status source = %q, want one of %v", d.Source, addrs(src))
	}
	// Replicated nodes keep their source stamps.
	srcStamps, dstStamps := stamps(t, src.Server(0), "/src"), stamps(t, dst.Server(0), "/dst")
	if a, b := srcStamps["/src/a"], dstStamps["/dst/a"]; a != b {
		t.Errorf("stamp of /dst/a = %s, want the source's %s", b, a)
	}

	src.Store(1, servertest.Put("/src/a", "1b"), servertest.Delete("/src/b/c"), servertest.Put("/src/skip/y", "no"), servertest.Put("/src/e", "5"))
	want = map[string]string{"/dst/a": "1b", "/dst/d": "3", "/dst/e": "5", "/dst/local": "mine"}
	waitHolds(t, dst, "/", want)
	st, d := waitState(t, dst, 0, "mirror", "caught up after live changes", caughtUp)
	if d.Received == 0 || d.Applied == 0 || d.Bytes == 0 || st.Error != "" {
		t.Errorf("status %+v detail %+v: want counts and no error", st, d)
	}
	// The runner's metrics say the same.
	r := runner(dst)
	applied, following := metric(t, dst.Server(r), "replds_replicate_applied_nodes_total", ""), metric(t, dst.Server(r), "replds_replicate_state", replicate.StateFollowing)
	if applied == 0 || following != 1 {
		t.Errorf("runner metrics: applied %v, state following %v; want > 0 and 1", applied, following)
	}
}

// metric returns the value of the series of name for job "mirror" (and
// state, if given) in server s's registry.
func metric(t *testing.T, s *server.Server, name, state string) float64 {
	t.Helper()
	kv := []string{"job", "mirror"}
	if state != "" {
		kv = append(kv, "state", state)
	}
	return servertest.Gathered(t, s, name, kv...)
}

// TestReplicate_TakeoverResumes: when the runner stops, another server
// takes over from the token in the status node: it receives only what
// came after it (nothing copied twice) and everything (nothing skipped).
func TestReplicate_TakeoverResumes(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 3, withJobs())
	want := map[string]string{}
	var ws []*repldspb.Write
	for i := range 500 {
		p := fmt.Sprintf("/p/n%03d", i)
		ws = append(ws, servertest.Put(p, p))
		want[p] = p
	}
	src.Store(0, ws...)
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	waitHolds(t, dst, "/p", want)
	dst.WaitConverged(20 * time.Second)
	first := runner(dst)
	if first < 0 {
		t.Fatal("no runner")
	}
	// The job may have moved while the cluster became ready: what counts
	// is the status of the runner that stops, and that its state reached
	// the others (the nodes, and the vector raised to its token).
	_, before := waitState(t, dst, first, "job", "the first runner's status with everything applied", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.Applied >= 500 && st.Runner == dst.Server(first).Name()
	})
	srcOrigin := src.Server(0).DB().Origin()
	dst.Wait(20*time.Second, "every destination server's vector at the token", func() error {
		for i := range dst.N() {
			if got, want := dst.Server(i).DB().Vector()[srcOrigin], before.Token.Vector[fmt.Sprintf("%016x", srcOrigin)]; got < want {
				return fmt.Errorf("server %d: vector[source] = %d, want %d", i, got, want)
			}
		}
		return nil
	})
	firstName := dst.Server(first).Name()
	dst.Stop(first)

	ws = ws[:0]
	for i := range 100 {
		p := fmt.Sprintf("/p/m%03d", i)
		ws = append(ws, servertest.Put(p, "new"))
		want[p] = "new"
	}
	src.Store(0, ws...)
	waitHolds(t, dst, "/p", want)
	other := (first + 1) % 3
	st, after := waitState(t, dst, other, "job", "the new runner caught up", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.Applied >= before.Applied+100 && st.Runner != firstName
	})
	if got := after.Received - before.Received; got != 100 {
		t.Errorf("the new runner (%s) received %d nodes, want the 100 new ones only", st.Runner, got)
	}
	if got := after.Applied - before.Applied; got != 100 {
		t.Errorf("the new runner applied %d nodes, want 100", got)
	}
}

// TestReplicate_SourceFailover: when the source server in use stops, the
// job moves to another listed source server and goes on.
func TestReplicate_SourceFailover(t *testing.T) {
	src := servertest.NewCluster(t, 2)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "1"))
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	_, d := waitState(t, dst, 0, "job", "following", caughtUp)
	used := slices.Index(addrs(src), d.Source)
	if used < 0 {
		t.Fatalf("source in use %q is not a listed one", d.Source)
	}
	src.Stop(used)
	other := 1 - used
	src.Store(other, servertest.Put("/p/b", "2"))
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1", "/p/b": "2"})
	waitState(t, dst, 0, "job", "following the other source server", func(st jobs.Status, d replicate.Detail) bool {
		return d.Source == src.Addr(other) && d.Reconnects >= 1 && caughtUp(st, d)
	})
}

// TestReplicate_StopAbortStart: stop applies everything the source held
// when asked, then stops; start resumes from the token (no full copy);
// abort stops at once.
func TestReplicate_StopAbortStart(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "1"))
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	waitState(t, dst, 0, "job", "following", caughtUp)

	want := map[string]string{"/p/a": "1"}
	for i := range 20 {
		var ws []*repldspb.Write
		for j := range 50 {
			p := fmt.Sprintf("/p/%d/%d", i, j)
			ws = append(ws, servertest.Put(p, "x"))
			want[p] = "x"
		}
		src.Store(0, ws...)
	}
	request(t, dst, "job", "stop")
	_, stopped := waitState(t, dst, 0, "job", "stopped", func(st jobs.Status, d replicate.Detail) bool {
		return st.State == replicate.StateStopped && d.Stopped
	})
	// Everything written before the request is here once stopped.
	if got := live(t, dst.Server(0), "/p"); !maps.Equal(got, want) {
		t.Fatalf("stopped holding %d nodes, want %d: %s", len(got), len(want), diff(got, want))
	}

	src.Store(0, servertest.Put("/p/after", "2"))
	want["/p/after"] = "2"
	request(t, dst, "job", "start")
	waitHolds(t, dst, "/p", want)
	_, d := waitState(t, dst, 0, "job", "following again", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && !d.Stopped
	})
	if got := d.Received - stopped.Received; got != 1 {
		t.Errorf("start received %d nodes, want 1 (resumed, not copied again)", got)
	}

	request(t, dst, "job", "abort")
	waitState(t, dst, 0, "job", "stopped by abort", func(st jobs.Status, d replicate.Detail) bool {
		return st.State == replicate.StateStopped && d.Stopped
	})
	src.Store(0, servertest.Put("/p/later", "3"))
	want["/p/later"] = "3"
	request(t, dst, "job", "start")
	waitHolds(t, dst, "/p", want)
}

// TestReplicate_TwoWayNoLoop: jobs A->B and B->A run at once on the same
// prefix; every write crosses once, concurrent writes of one path end with
// the same winner on both sides, and nothing comes back.
func TestReplicate_TwoWayNoLoop(t *testing.T) {
	a := servertest.NewCluster(t, 2, withJobs())
	b := servertest.NewCluster(t, 2, withJobs())
	waitReady(t, a)
	waitReady(t, b)
	define(t, b, "from-a", replicate.Spec{Source: addrs(a), SourcePrefix: "/shared"})
	define(t, a, "from-b", replicate.Spec{Source: addrs(b), SourcePrefix: "/shared"})
	a.Store(0, servertest.Put("/shared/a1", "A"), servertest.Put("/shared/both", "from A"))
	b.Store(1, servertest.Put("/shared/b1", "B"), servertest.Put("/shared/both", "from B"))
	a.Store(1, servertest.Put("/shared/a2", "A"))
	b.Store(0, servertest.Put("/shared/b2", "B"), servertest.Delete("/shared/b1"))

	converged := func(what string) {
		t.Helper()
		a.Wait(20*time.Second, what, func() error {
			want := stamps(t, a.Server(0), "/shared")
			for _, c := range []*servertest.Cluster{a, b} {
				for i := range c.N() {
					if got := stamps(t, c.Server(i), "/shared"); !maps.Equal(got, want) {
						return fmt.Errorf("%s differs from a0: %s", c.Server(i).Name(), diff(got, want))
					}
				}
			}
			return nil
		})
	}
	converged("both clusters converged on the same stamps")
	if got := live(t, b.Server(0), "/shared"); len(got) != 4 {
		t.Errorf("live nodes %v, want a1, a2, b2 and both", got)
	}
	// Each job received the writes of the other cluster only: 3 from A
	// (a1, both, a2), 4 from B (b1, both, b2, the tombstone of b1 counts
	// once as the winner of b1), never its own cluster's back.
	_, fromA := waitState(t, b, 0, "from-a", "A->B caught up", caughtUp)
	_, fromB := waitState(t, a, 0, "from-b", "B->A caught up", caughtUp)
	if fromA.Received > 3 || fromB.Received > 4 {
		t.Errorf("received: A->B %d (want at most 3), B->A %d (want at most 4): a node came back", fromA.Received, fromB.Received)
	}

	// One more write on A crosses to B once; B->A receives nothing.
	a.Store(0, servertest.Put("/shared/last", "A"))
	converged("the last write on both sides")
	_, fromA2 := waitState(t, b, 0, "from-a", "A->B caught up again", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.Received > fromA.Received
	})
	_, fromB2 := waitState(t, a, 0, "from-b", "B->A caught up again", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.Received > 0
	})
	if got := fromA2.Received - fromA.Received; got != 1 {
		t.Errorf("A->B received %d more nodes for one write, want 1", got)
	}
	if fromB2.Received != fromB.Received {
		t.Errorf("B->A received %d more nodes after a write on A, want 0: it came back", fromB2.Received-fromB.Received)
	}
}

// TestReplicate_BadSpecRefused: a bad spec or request is refused at write
// time with a message naming the field, and nothing is written.
func TestReplicate_BadSpecRefused(t *testing.T) {
	dst := servertest.NewCluster(t, 1, withJobs())
	for _, tc := range []struct{ spec, field string }{
		{`{}`, `"source"`},
		{`{"source":["nohost"]}`, `"source"[0]`},
		{`{"source":["h:1"],"source_prefix":"p"}`, `"source_prefix"`},
		{`{"source":["h:1"],"dest_prefix":"/a/../b"}`, `"dest_prefix"`},
		{`{"source":["h:1"],"dest_prefix":"/_replds/jobs"}`, `"dest_prefix"`},
		{`{"source":["h:1"],"source_prefix":"/a","exclude":["/b"]}`, `"exclude"[0]`},
		{`{"source":["h:1"],"tls_cert":"/c.crt"}`, `"tls_key"`},
		{`{"source":["h:1"],"tls_cert":"c.crt","tls_key":"/k","tls_ca":"/ca"}`, `"tls_cert"`},
		{`{"source":["h:1"],"sauce":1}`, `sauce`},
		{`{"source":"h:1"}`, `source`},
	} {
		_, err := dst.Client(0).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{servertest.Put(jobs.DefPath(replicate.Kind, "bad"), tc.spec)}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("spec %s: %v, want InvalidArgument naming %s", tc.spec, err, tc.field)
		}
	}
	_, err := dst.Client(0).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{servertest.Put(jobs.RequestPath(replicate.Kind, "bad"), `{"action":"pause"}`)}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"action"`) {
		t.Errorf("request pause: %v, want InvalidArgument naming action", err)
	}
	if _, err := dst.Server(0).DB().Get(jobs.DefPath(replicate.Kind, "bad")); err == nil {
		t.Error("a refused spec was stored")
	}
}

// TestReplicate_ACLs: defining a job into a prefix needs write on it in
// the destination; in the source the job is a client whose certificate
// needs read: without it, or once it is revoked, the status says failed
// with the source's refusal, and nothing is partly mirrored.
func TestReplicate_ACLs(t *testing.T) {
	pki := servertest.NewPKI(t)
	src := servertest.NewCluster(t, 1, servertest.WithTLS(pki,
		"server0 peer\nclient / write\nclient / read\nreplicator /src read\nnoread /other read\n"))
	dst := servertest.NewCluster(t, 2, servertest.WithTLS(pki,
		"server0 peer\nserver1 peer\nclient /_replds write\nclient /_replds read\nclient /dst write\nclient / read\n"), withJobs())
	src.Store(0, servertest.Put("/src/a", "1"), servertest.Put("/other/b", "2"))

	spec := func(identity, dest string) string {
		f := pki.Files(t, identity)
		data, _ := json.Marshal(replicate.Spec{Source: addrs(src), SourcePrefix: "/src", DestPrefix: dest, TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA})
		return string(data)
	}
	_, err := dst.Client(0).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{servertest.Put(jobs.DefPath(replicate.Kind, "outside"), spec("replicator", "/elsewhere"))}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "dest_prefix") {
		t.Errorf("job into /elsewhere: %v, want PermissionDenied naming dest_prefix", err)
	}

	dst.Store(0, servertest.Put(jobs.DefPath(replicate.Kind, "good"), spec("replicator", "/dst/good")))
	dst.Store(0, servertest.Put(jobs.DefPath(replicate.Kind, "noread"), spec("noread", "/dst/noread")))
	waitHolds(t, dst, "/dst", map[string]string{"/dst/good/a": "1"})
	waitState(t, dst, 0, "good", "the good job following", caughtUp)
	if n, _ := dst.Server(0).DB().Get(jobs.DefPath(replicate.Kind, "good")); !strings.Contains(string(n.Data), `"owner":"client"`) {
		t.Errorf("stored spec %s: want the owner recorded", n.Data)
	}
	waitState(t, dst, 1, "noread", "the job without read failed", func(st jobs.Status, d replicate.Detail) bool {
		return st.State == replicate.StateFailed && strings.Contains(st.Error, "PermissionDenied") && d.Received == 0
	})

	// Revoking read at the source stops the job with a clear error.
	if err := src.SetACL("server0 peer\nclient / write\nclient / read\nnoread /other read\n"); err != nil {
		t.Fatal(err)
	}
	src.Store(0, servertest.Put("/src/after", "x"))
	waitState(t, dst, 0, "good", "the good job failed after the revocation", func(st jobs.Status, d replicate.Detail) bool {
		return st.State == replicate.StateFailed && strings.Contains(st.Error, "PermissionDenied")
	})
	if got := live(t, dst.Server(0), "/dst"); !maps.Equal(got, map[string]string{"/dst/good/a": "1"}) {
		t.Errorf("after the revocation the destination holds %v", got)
	}
}

// TestReplicate_SourceDownLagReported: while no source server answers,
// the lag in seconds grows in the status; once the source is back the
// job catches up and the lag goes back to zero.
func TestReplicate_SourceDownLagReported(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "1"))
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	waitState(t, dst, 0, "job", "following", caughtUp)
	src.Stop(0)
	waitState(t, dst, 0, "job", "the lag growing", func(st jobs.Status, d replicate.Detail) bool {
		return d.LagSeconds >= 1
	})
	src.Restart(0)
	src.Store(0, servertest.Put("/p/b", "2"))
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1", "/p/b": "2"})
	waitState(t, dst, 0, "job", "caught up, no lag", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.LagSeconds == 0 && d.Reconnects >= 1
	})
}

// TestReplicate_RunnerKilledMidCopy: a runner stopped during the initial
// copy is replaced; the new one copies again from the source (an
// incomplete copy has no token), what reached it already being no-ops,
// and every node ends on every destination server.
func TestReplicate_RunnerKilledMidCopy(t *testing.T) {
	const n = 20000
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 3, withJobs())
	waitReady(t, dst)
	data := strings.Repeat("x", 1024)
	want := map[string]string{}
	for i := 0; i < n; i += 1000 {
		var ws []*repldspb.Write
		for j := i; j < i+1000; j++ {
			p := fmt.Sprintf("/p/%05d", j)
			ws = append(ws, servertest.Put(p, data))
			want[p] = data
		}
		src.Store(0, ws...)
	}
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	first := -1
	dst.Wait(20*time.Second, "a runner part way through the copy", func() error {
		first = runner(dst)
		if first < 0 {
			return fmt.Errorf("no runner yet")
		}
		got := 0
		dst.Server(first).DB().Walk("/p", func(string, store.Meta) bool { got++; return true })
		if got == 0 || got == n {
			return fmt.Errorf("the runner holds %d of %d nodes", got, n)
		}
		return nil
	})
	dst.Stop(first)
	waitHolds(t, dst, "/p", want)
	other := (first + 1) % 3
	st, d := waitState(t, dst, other, "job", "the new runner caught up", caughtUp)
	if d.Received < n {
		t.Errorf("runner %s received %d nodes, want the whole copy again (%d)", st.Runner, d.Received, n)
	}
	dst.Restart(first)
	waitHolds(t, dst, "/p", want)
	dst.WaitConverged(20 * time.Second)
}

// TestReplicate_Paused: a job defined paused copies nothing and says
// paused; cleared, it copies; paused again and resumed, it keeps its
// token (no new copy).
func TestReplicate_Paused(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "1"))
	spec := replicate.Spec{Source: addrs(src), SourcePrefix: "/p", Paused: true}
	define(t, dst, "job", spec)
	waitState(t, dst, 0, "job", "paused", func(st jobs.Status, d replicate.Detail) bool { return st.State == replicate.StatePaused })
	if got := live(t, dst.Server(0), "/p"); len(got) != 0 {
		t.Errorf("a paused job copied %v", got)
	}
	spec.Paused = false
	define(t, dst, "job", spec)
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1"})
	_, before := waitState(t, dst, 0, "job", "following", caughtUp)
	spec.Paused = true
	define(t, dst, "job", spec)
	waitState(t, dst, 0, "job", "paused again", func(st jobs.Status, d replicate.Detail) bool { return st.State == replicate.StatePaused })
	src.Store(0, servertest.Put("/p/b", "2"))
	spec.Paused = false
	define(t, dst, "job", spec)
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1", "/p/b": "2"})
	_, after := waitState(t, dst, 0, "job", "following again", func(st jobs.Status, d replicate.Detail) bool {
		return caughtUp(st, d) && d.Received > before.Received
	})
	if got := after.Received - before.Received; got != 1 {
		t.Errorf("resumed after a pause, the job received %d nodes, want 1 (no new copy)", got)
	}
}

// TestReplicate_LagUnderSteadyWrites: a source written to all the time,
// each write applied promptly, shows a lag in seconds near the probe
// interval, not one that grows for as long as the writes go on.
func TestReplicate_LagUnderSteadyWrites(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "0"))
	define(t, dst, "job", replicate.Spec{Source: addrs(src), SourcePrefix: "/p"})
	waitState(t, dst, 0, "job", "following", caughtUp)
	var worst float64
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		src.Store(0, servertest.Put("/p/a", fmt.Sprint(i)))
		if _, d, err := jobStatus(dst, 0, "job"); err == nil && d.LagSeconds > worst {
			worst = d.LagSeconds
		}
	}
	if worst > 1.5 {
		t.Errorf("lag under steady, promptly applied writes reached %.1f s; want about the probe interval (100 ms)", worst)
	}
}

// TestReplicate_CollectedDeleteNotResurrected: a delete whose tombstone
// the source collected while the job was paused reaches the destination
// anyway: the job's token is below the source's floor, the source replays
// everything, and the replicated node the replay lacks is deleted; a node
// written in the destination directly stays.
func TestReplicate_CollectedDeleteNotResurrected(t *testing.T) {
	src := servertest.NewCluster(t, 1)
	dst := servertest.NewCluster(t, 1, withJobs())
	src.Store(0, servertest.Put("/p/a", "1"), servertest.Put("/p/b", "2"))
	spec := replicate.Spec{Source: addrs(src), SourcePrefix: "/p"}
	define(t, dst, "job", spec)
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1", "/p/b": "2"})
	dst.Store(0, servertest.Put("/p/local", "written here"))
	spec.Paused = true
	define(t, dst, "job", spec)
	waitState(t, dst, 0, "job", "paused", func(st jobs.Status, d replicate.Detail) bool { return st.State == replicate.StatePaused })

	ctx := context.Background()
	if _, err := src.Client(0).Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/p/b", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	db := src.Server(0).DB()
	if n, _, err := db.Collect(ctx, store.VersionLimit(time.Now()), db.Vector()); err != nil || n != 1 {
		t.Fatalf("Collect = %d, %v; want the tombstone of /p/b collected", n, err)
	}
	spec.Paused = false
	define(t, dst, "job", spec)
	waitHolds(t, dst, "/p", map[string]string{"/p/a": "1", "/p/local": "written here"})
}
