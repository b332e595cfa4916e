package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

func put(t *testing.T, c repldspb.RepldsClient, kv ...string) *repldspb.StoreResponse {
	t.Helper()
	req := &repldspb.StoreRequest{}
	for i := 0; i < len(kv); i += 2 {
		req.Writes = append(req.Writes, &repldspb.Write{Path: kv[i], Data: []byte(kv[i+1])})
	}
	resp, err := c.Store(context.Background(), req)
	if err != nil {
		t.Fatalf("Store(%v) = %v", kv, err)
	}
	return resp
}

// waitData waits until every running server holds data at path (nil: the
// path is absent).
func waitData(t *testing.T, c *servertest.Cluster, path string, data []byte) {
	t.Helper()
	c.Wait(10*time.Second, "data of "+path, func() error {
		for i := range c.N() {
			s := c.Server(i)
			if s == nil {
				continue
			}
			n, err := s.DB().Get(path)
			switch {
			case data == nil && errors.Is(err, store.ErrNotFound):
			case data == nil:
				return fmt.Errorf("server %d: Get(%q) = %q, %v; want not found", i, path, n.Data, err)
			case err != nil:
				return fmt.Errorf("server %d: Get(%q): %v", i, path, err)
			case !bytes.Equal(n.Data, data):
				return fmt.Errorf("server %d: Get(%q) = %q, want %q", i, path, n.Data, data)
			}
		}
		return nil
	})
}

func TestCluster_WriteReachesEveryServer(t *testing.T) {
	c := servertest.NewCluster(t, 3)
	put(t, c.Client(0), "/data/foo", "foo", "/data/sub/one", "one")
	waitData(t, c, "/data/foo", []byte("foo"))
	waitData(t, c, "/data/sub/one", []byte("one"))

	// An update and a delete through another server reach everyone too.
	put(t, c.Client(1), "/data/foo", "bar")
	waitData(t, c, "/data/foo", []byte("bar"))
	if _, err := c.Client(2).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{
		{Path: "/data/sub", Delete: true, Recursive: true},
	}}); err != nil {
		t.Fatalf("recursive delete: %v", err)
	}
	waitData(t, c, "/data/sub/one", nil)
	c.WaitConverged(10 * time.Second)
}

func TestCluster_ConcurrentWritesConverge(t *testing.T) {
	c := servertest.NewCluster(t, 3)
	var wg sync.WaitGroup
	for round := range 20 {
		for i := range c.N() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Client(i).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{
					{Path: "/contended", Data: []byte(fmt.Sprintf("server %d round %d", i, round))},
				}})
				if err != nil {
					t.Errorf("Store on %d: %v", i, err)
				}
			}()
		}
	}
	wg.Wait()
	c.WaitConverged(10 * time.Second)
	want, err := c.Server(0).DB().Get("/contended")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < c.N(); i++ {
		got, err := c.Server(i).DB().Get("/contended")
		if err != nil || !bytes.Equal(got.Data, want.Data) || got.Version != want.Version {
			t.Errorf("server %d has %q@%d (%v), server 0 has %q@%d", i, got.Data, got.Version, err, want.Data, want.Version)
		}
	}
}

func TestCluster_RestartedServerCatchesUp(t *testing.T) {
	c := servertest.NewCluster(t, 3)
	put(t, c.Client(0), "/a", "1")
	waitData(t, c, "/a", []byte("1"))
	c.Stop(2)
	for i := range 50 {
		put(t, c.Client(i%2), fmt.Sprintf("/while-down/%d", i), "x")
	}
	put(t, c.Client(1), "/a", "2")
	c.Restart(2)
	waitData(t, c, "/a", []byte("2"))
	waitData(t, c, "/while-down/49", []byte("x"))
	c.WaitConverged(10 * time.Second)
}

func TestCluster_NewEmptyServerGetsTheTree(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	const n = 3000
	req := &repldspb.StoreRequest{}
	for i := range n {
		req.Writes = append(req.Writes, &repldspb.Write{Path: fmt.Sprintf("/tree/%d/%d", i%10, i), Data: []byte(strings.Repeat("x", 100))})
	}
	if _, err := c.Client(0).Store(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	i := c.Add()
	c.WaitConverged(20 * time.Second)
	if got := c.Server(i).DB().Stats().Nodes; got != n {
		t.Errorf("new server holds %d nodes, want %d", got, n)
	}
}

func TestServer_InvalidPathsRefused(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	client := c.Client(0)
	for _, tc := range []struct{ path, want string }{
		{"relative/path", "not absolute"},
		{"/a/../b", ".."},
		{"", "empty"},
		{"/", "/"},
		{"/a\x00b", "control"},
		{"/a//b", "empty"},
	} {
		t.Run(fmt.Sprintf("%q", tc.path), func(t *testing.T) {
			_, err := client.Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{
				{Path: "/ok", Data: []byte("x")},
				{Path: tc.path, Data: []byte("x")},
			}})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Store(%q) = %v, want InvalidArgument", tc.path, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.want) {
				t.Errorf("Store(%q) error %q does not name the problem (%q)", tc.path, msg, tc.want)
			}
		})
	}
	// Nothing of the refused batches was written, and the server still serves.
	if _, err := client.Get(context.Background(), &repldspb.GetRequest{Path: "/ok"}); status.Code(err) != codes.NotFound {
		t.Errorf("Get(/ok) after refused batches = %v, want NotFound", err)
	}
	put(t, client, "/ok", "x")
}

func TestServer_LeafDirectoryConflictRefused(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	put(t, c.Client(0), "/a/b", "x")
	_, err := c.Client(0).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/a", Data: []byte("y")}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Store(/a) over directory /a = %v, want FailedPrecondition", err)
	}
}

// watch opens a Watch stream and returns a function reading the next
// message.
func watch(t *testing.T, c repldspb.RepldsClient, prefix string, token *repldspb.Vector) func() *repldspb.WatchResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := c.Watch(ctx, &repldspb.WatchRequest{Prefix: prefix, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return func() *repldspb.WatchResponse {
		t.Helper()
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Watch(%s).Recv: %v", prefix, err)
		}
		return msg
	}
}

// untilSynced reads a Watch stream up to the end of its replay and returns
// the paths it carried (see paths).
func untilSynced(next func() *repldspb.WatchResponse) []string {
	var got []string
	for {
		msg := next()
		got = append(got, paths(msg)...)
		if msg.Synced {
			return got
		}
	}
}

// paths lists a message's nodes, tombstones as -path.
func paths(msg *repldspb.WatchResponse) []string {
	var out []string
	for _, n := range msg.Nodes {
		p := n.Path
		if n.Deleted {
			p = "-" + p
		}
		out = append(out, p)
	}
	return out
}

func TestWatch_ReplayLiveAndResume(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	put(t, c.Client(0), "/data/sub/one", "1", "/data/sub/two", "2", "/data/foo", "f", "/data/subx", "no")
	waitData(t, c, "/data/subx", []byte("no"))

	next := watch(t, c.Client(1), "/data/sub", nil)
	var got []string
	var token *repldspb.Vector
	for token == nil {
		msg := next()
		got = append(got, paths(msg)...)
		if msg.Bookmark != nil {
			if !msg.Synced {
				t.Errorf("first bookmark not marked synced")
			}
			token = msg.Bookmark
		}
	}
	if want := "/data/sub/one,/data/sub/two"; strings.Join(got, ",") != want {
		t.Errorf("replay = %v, want %s", got, want)
	}

	// A live change under the prefix arrives as one batch with a bookmark;
	// one outside it does not arrive.
	put(t, c.Client(0), "/data/foo", "g")
	put(t, c.Client(0), "/data/sub/three", "3", "/data/sub/one", "1b")
	msg := next()
	for len(msg.Nodes) == 0 {
		msg = next()
	}
	if got, want := strings.Join(paths(msg), ","), "/data/sub/three,/data/sub/one"; got != want || msg.Bookmark == nil {
		t.Errorf("live batch = %s (bookmark %v), want %s with a bookmark", got, msg.Bookmark != nil, want)
	}

	// Resuming from the first token replays only what changed since,
	// deletes included, on the other server.
	if _, err := c.Client(1).Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/data/sub/two", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	waitData(t, c, "/data/sub/two", nil)
	next = watch(t, c.Client(0), "/data/sub", token)
	got = untilSynced(next)
	if want := "/data/sub/one,/data/sub/three,-/data/sub/two"; strings.Join(got, ",") != want {
		t.Errorf("resumed replay = %v, want %s", got, want)
	}
}

func TestSync_IdleRoundDoesNotGrowWithStoreSize(t *testing.T) {
	sizes := map[int]int64{}
	for _, n := range []int{100, 5000} {
		c := servertest.NewCluster(t, 2)
		req := &repldspb.StoreRequest{}
		for i := range n {
			req.Writes = append(req.Writes, &repldspb.Write{Path: fmt.Sprintf("/n/%d", i), Data: []byte("v")})
		}
		if _, err := c.Client(0).Store(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		c.WaitConverged(20 * time.Second)
		bytes, err := server.MeasureSyncRound(context.Background(), c.Server(1), c.Addr(0))
		if err != nil {
			t.Fatal(err)
		}
		sizes[n] = bytes
	}
	t.Logf("idle sync round bytes: %v", sizes)
	if sizes[100] != sizes[5000] || sizes[5000] > 1024 {
		t.Errorf("idle sync round = %d bytes at 100 nodes, %d at 5000; want equal and < 1 KiB", sizes[100], sizes[5000])
	}
}

func TestSync_RepairWhenVectorsMatchButTreesDiffer(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	put(t, c.Client(0), "/x", "1")
	c.WaitConverged(10 * time.Second)
	// A node that no vector accounts for (as after a restore, or a purged
	// tombstone): only the hash tree can find it.
	orphan := store.Node{Path: "/orphan", Meta: store.Meta{Version: 1 << 40, Origin: 42, Seq: 7, Size: 1}, Data: []byte("o")}
	if _, err := c.Server(1).DB().Apply(context.Background(), []store.Node{orphan}, nil); err != nil {
		t.Fatal(err)
	}
	waitData(t, c, "/orphan", []byte("o"))
}

var _ = io.EOF

// TestCluster_CloseHandsOverAcknowledgedWrites stops a server while clients
// write to it: every write it acknowledged reaches its peer, although the
// server never comes back.
func TestCluster_CloseHandsOverAcknowledgedWrites(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	client := c.Client(0)
	acked := writeWhileStopping(c, func(p string) error {
		_, err := client.Store(context.Background(), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: p, Data: []byte("x")}}})
		return err // an error: the server is gone
	})
	t.Logf("%d writes acknowledged before the stop", len(acked))
	c.Wait(10*time.Second, "acknowledged writes on server 1", func() error {
		for _, p := range acked {
			if _, err := c.Server(1).DB().Get(p); err != nil {
				return fmt.Errorf("server 1: Get(%s) of a write server 0 acknowledged: %v", p, err)
			}
		}
		return nil
	})
}

// TestCluster_CloseRefusesInternalWrites writes through a server's
// Writer, as the server's own writers do, while it closes: every write it
// acknowledged must be on its peer when Close returns, so a write that
// comes after the pushers began their last drain must be refused
// (store.ErrClosed), not acknowledged and left unpushed.
func TestCluster_CloseRefusesInternalWrites(t *testing.T) {
	c := servertest.NewCluster(t, 2, func(i int, cfg *server.Config) {
		cfg.SyncInterval = time.Hour
	})
	s := c.Server(0)
	waitPushing(c, func(p string) { put(t, c.Client(0), p, "m") })
	acked := writeWhileStopping(c, func(p string) error {
		_, err := s.Writer().Write(context.Background(), []store.Write{{Path: p, Data: []byte("x")}})
		if err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Write(%s) while closing = %v, want store.ErrClosed", p, err)
		}
		return err
	})
	for _, p := range acked {
		if _, err := c.Server(1).DB().Get(p); err != nil {
			t.Fatalf("server 1 after server 0 closed: Get(%s) of a write server 0 acknowledged: %v (%d acknowledged)", p, err, len(acked))
		}
	}
}

// writeWhileStopping writes distinct paths with write from 4 goroutines,
// each until write fails; once 40 writes are acknowledged it stops server
// 0. It returns the acknowledged paths once every goroutine has ended.
func writeWhileStopping(c *servertest.Cluster, write func(path string) error) []string {
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, 64)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				p := fmt.Sprintf("/w/%d/%d", g, i)
				if write(p) != nil {
					return
				}
				mu.Lock()
				acked = append(acked, p)
				mu.Unlock()
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 40 {
		<-started
	}
	c.Stop(0)
	wg.Wait()
	return acked
}

// TestCluster_RestoredServerTakesNewIncarnation restores a server's
// database from an older copy: the writes it acknowledged after the copy
// come back to it from its peer, and its new writes reach the peer and a
// resumed Watch there, although their seqs were already used.
func TestCluster_RestoredServerTakesNewIncarnation(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	restore, token := olderCopy(t, c)
	restore()
	c.WaitMembers(10 * time.Second)
	waitData(t, c, "/r/2", []byte("two")) // back on server 0
	put(t, c.Client(0), "/r/new", "new")
	waitData(t, c, "/r/new", []byte("new"))
	c.WaitConverged(10 * time.Second)

	got := untilSynced(watch(t, c.Client(1), "/r", token))
	if !slices.Contains(got, "/r/new") {
		t.Errorf("Watch resumed on server 1 replayed %v, want /r/new among them", got)
	}
}

// TestCluster_RestoredServerAsksPeersBeforeWriting restores a server from
// an older copy and writes to it at once, before any sync round (digest
// sync is off): the server must have asked its peer what it has seen of
// its writes and taken a new incarnation first, or the write reuses a seq
// that a resume token taken before the restore already covers, and a
// Watch resumed from that token never gets it.
func TestCluster_RestoredServerAsksPeersBeforeWriting(t *testing.T) {
	c := servertest.NewCluster(t, 2, func(i int, cfg *server.Config) {
		cfg.SyncInterval = time.Hour
	})
	restore, token := olderCopy(t, c)
	restore()
	put(t, c.Client(0), "/r/new", "new")

	got := untilSynced(watch(t, c.Client(0), "/r", token))
	if !slices.Contains(got, "/r/new") {
		t.Errorf("Watch resumed on the restored server replayed %v, want /r/new among them", got)
	}
}

// olderCopy copies server 0's database after a first write (/r/1), then
// writes /r/2 and /r/3 there, which reach server 1 by push, and takes a
// Watch token on server 1 that covers them. restore restarts server 0 on
// the copy.
func olderCopy(t *testing.T, c *servertest.Cluster) (restore func(), token *repldspb.Vector) {
	t.Helper()
	put(t, c.Client(0), "/r/1", "one")
	waitData(t, c, "/r/1", []byte("one"))
	db := filepath.Join(c.Config(0).DataDir, "replds.db")
	c.Stop(0)
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyFile(t, db, backup)
	c.Restart(0)
	c.WaitMembers(10 * time.Second)
	waitPushing(c, func(p string) { put(t, c.Client(0), p, "m") })
	put(t, c.Client(0), "/r/2", "two", "/r/3", "three")
	waitData(t, c, "/r/3", []byte("three"))
	next := watch(t, c.Client(1), "/r", nil)
	for token == nil {
		token = next().Bookmark
	}
	return func() {
		c.Stop(0)
		copyFile(t, backup, db)
		c.Restart(0)
	}, token
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCluster_PeerCatchesUpFromTheOriginAlone restarts one of two servers:
// what the other wrote meanwhile exists only there, and its new push
// stream starts after it, so only its digest answers can deliver it. They
// must not leave it out because a push stream into the asker is live: that
// stream carries only what came after its start.
func TestCluster_PeerCatchesUpFromTheOriginAlone(t *testing.T) {
	ctx := context.Background()
	// Server 1 syncs only when the test says so.
	c := servertest.NewCluster(t, 2, func(i int, cfg *server.Config) {
		if i == 1 {
			cfg.SyncInterval = time.Hour
		}
	})
	c.Stop(1)
	for i := range 20 {
		put(t, c.Client(0), fmt.Sprintf("/alone/%d", i), "x")
	}
	c.Restart(1)
	// Server 0's push stream to server 1 is up and delivering, and server
	// 1 names it in its digests.
	waitPushing(c, func(p string) { put(t, c.Client(0), p, "m") })
	if _, err := c.Server(1).DB().Get("/alone/19"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("server 1 holds /alone/19 before any sync round (%v): the test proves nothing", err)
	}
	if err := server.SyncRoundWith(ctx, c.Server(1), c.Config(0).Name, c.Addr(0)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Server(1).DB().Get("/alone/19"); err != nil || string(n.Data) != "x" {
		t.Errorf("after a sync round, server 1: Get(/alone/19) = %v; want x", err)
	}
	c.WaitConverged(10 * time.Second)
}

// waitPushing writes markers on server 0 with write until one reaches
// server 1 (a push session starts at the head of the log, so a marker
// written before it opened never comes by push): server 0's push stream
// to server 1 is then up and delivering.
func waitPushing(c *servertest.Cluster, write func(path string)) {
	marker := 0
	c.Wait(10*time.Second, "a push from server 0 to server 1", func() error {
		if marker > 0 {
			if _, err := c.Server(1).DB().Get(fmt.Sprintf("/marker/%d", marker)); err == nil {
				return nil
			}
		}
		marker++
		write(fmt.Sprintf("/marker/%d", marker))
		return fmt.Errorf("marker %d not on server 1 yet", marker)
	})
}

// TestCluster_PushFollowsStoreCommits writes on one server's store
// directly, as a writer inside the server would, not through the Store
// RPC: its pushers must wake on the commit and deliver the nodes, with
// digest sync out of the way.
func TestCluster_PushFollowsStoreCommits(t *testing.T) {
	ctx := context.Background()
	c := servertest.NewCluster(t, 2, func(i int, cfg *server.Config) {
		cfg.SyncInterval = time.Hour
	})
	write := func(p string) {
		t.Helper()
		if _, err := c.Server(0).DB().Write(ctx, []store.Write{{Path: p, Data: []byte("x")}}); err != nil {
			t.Fatalf("Write(%s): %v", p, err)
		}
	}
	// Each marker arrives only if the idle pusher wakes on the commit.
	waitPushing(c, write)
	for i := range 5 {
		write(fmt.Sprintf("/direct/%d", i))
	}
	c.Wait(10*time.Second, "the direct writes on server 1", func() error {
		for i := range 5 {
			if _, err := c.Server(1).DB().Get(fmt.Sprintf("/direct/%d", i)); err != nil {
				return fmt.Errorf("/direct/%d: %w", i, err)
			}
		}
		return nil
	})
}
