package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// peersACL makes servers 0 to 2 peers and lets "client" do everything.
const peersACL = `
server0 peer
server1 peer
server2 peer
client / write
client / read
`

// clientAs returns a public API client of server i of c authenticating as
// identity cn.
func clientAs(t *testing.T, c *servertest.Cluster, pki *servertest.PKI, i int, cn string) repldspb.RepldsClient {
	t.Helper()
	return repldspb.NewRepldsClient(servertest.Dial(t, c.Addr(i), pki.DialOptions(t, cn)...))
}

// timeout returns a context for one RPC.
func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// storeReq returns a request writing "v" at each of paths.
func storeReq(paths ...string) *repldspb.StoreRequest {
	req := &repldspb.StoreRequest{}
	for _, p := range paths {
		req.Writes = append(req.Writes, &repldspb.Write{Path: p, Data: []byte("v")})
	}
	return req
}

// hasNode reports whether s holds a live node at path.
func hasNode(t *testing.T, s *server.Server, path string) bool {
	t.Helper()
	_, err := s.DB().Get(path)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q): %v", path, err)
	}
	return err == nil
}

func TestSecurity_ClientWithoutTrustedCertificateRefused(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""))
	// The cluster's own client gets in: the refusals below are about the
	// certificate, not a broken server.
	put(t, c.Client(0), "/secret", "s")

	other := servertest.NewPKI(t)
	noCert := pki.TLSConfig(t, "client")
	noCert.Certificates = nil
	otherCA := other.TLSConfig(t, "client")
	otherCA.RootCAs = noCert.RootCAs // trusts the server; the server must not trust it
	for _, tc := range []struct {
		name string
		tls  *tls.Config // nil: plaintext
	}{
		{"plaintext", nil},
		{"no certificate", noCert},
		{"certificate of another CA", otherCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := insecure.NewCredentials()
			if tc.tls != nil {
				creds = credentials.NewTLS(tc.tls)
			}
			client := repldspb.NewRepldsClient(servertest.Dial(t, c.Addr(0), grpc.WithTransportCredentials(creds)))
			_, err := client.Store(timeout(t), storeReq("/intruder"))
			if status.Code(err) != codes.Unavailable {
				t.Errorf("Store = %v, want Unavailable (handshake refused)", err)
			}
			_, err = client.Get(timeout(t), &repldspb.GetRequest{Path: "/secret"})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("Get = %v, want Unavailable (handshake refused)", err)
			}
			if tc.tls == nil {
				return
			}
			// The refusal is the server's TLS alert. (In TLS 1.3 the
			// client finishes its handshake first and reads the alert.)
			cfg := tc.tls.Clone()
			cfg.NextProtos = []string{"h2"}
			conn, err := tls.Dial("tcp", c.Addr(0), cfg)
			if err == nil {
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			// crypto/tls reports a received alert as a "remote error".
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "remote error" {
				t.Errorf("TLS connection without a trusted certificate: %v, want a TLS alert from the server", err)
			}
		})
	}
	if hasNode(t, c.Server(0), "/intruder") {
		t.Error("a refused client's write was stored")
	}
}

// aclTestRules are the rules of TestSecurity_ACLs.
const aclTestRules = `
client / write
client / read
host1 /data/host1 read   # read-only, one subtree
seg /a/b write
seg /a/b read
writer /data/w write
# "nobody" has no rules at all.
`

func TestSecurity_ACLs(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, aclTestRules))
	put(t, c.Client(0), "/data/host1/key", "1", "/data/host2/key", "2", "/a/b/x", "b", "/a/bc/x", "bc")

	type check struct {
		op, path string
		want     codes.Code
	}
	for _, tc := range []struct {
		identity string
		checks   []check
	}{
		{"nobody", []check{
			{"store", "/data/host1/key", codes.PermissionDenied},
			{"get", "/data/host1/key", codes.PermissionDenied},
			// Denied, not NotFound: a refusal says nothing about existence.
			{"get", "/data/nonexistent", codes.PermissionDenied},
		}},
		{"host1", []check{
			{"get", "/data/host1/key", codes.OK},
			{"get", "/data/host2/key", codes.PermissionDenied},
			{"get", "/data/host1x", codes.PermissionDenied},
			{"store", "/data/host1/key", codes.PermissionDenied}, // read-only
			{"store", "/data/host1/new", codes.PermissionDenied},
		}},
		{"seg", []check{
			{"get", "/a/b/x", codes.OK},
			{"store", "/a/b/y", codes.OK},
			{"store", "/a/b/deep/er", codes.OK},
			// Rules match on segment boundaries.
			{"get", "/a/bc/x", codes.PermissionDenied},
			{"store", "/a/bc/y", codes.PermissionDenied},
			{"store", "/a/c", codes.PermissionDenied},
		}},
		{"writer", []check{
			{"store", "/data/w/x", codes.OK},
			{"get", "/data/w/x", codes.PermissionDenied}, // write does not imply read
		}},
	} {
		t.Run(tc.identity, func(t *testing.T) {
			client := clientAs(t, c, pki, 0, tc.identity)
			for _, ck := range tc.checks {
				var err error
				switch ck.op {
				case "store":
					_, err = client.Store(timeout(t), storeReq(ck.path))
				case "get":
					_, err = client.Get(timeout(t), &repldspb.GetRequest{Path: ck.path})
				}
				if got := status.Code(err); got != ck.want {
					t.Errorf("%s %s as %s = %v, want %v", ck.op, ck.path, tc.identity, err, ck.want)
				}
				if status.Code(err) == codes.PermissionDenied && strings.Contains(status.Convert(err).Message(), "not found") {
					t.Errorf("%s %s as %s: refusal %q mentions existence", ck.op, ck.path, tc.identity, err)
				}
			}
		})
	}

	t.Run("List and Watch show only readable nodes", func(t *testing.T) {
		for _, tc := range []struct{ identity, prefix, want string }{
			{"host1", "/", "/data/host1/key"},
			{"host1", "/data", "/data/host1/key"},
			{"seg", "/a", "/a/b/deep/er,/a/b/x,/a/b/y"}, // written by the seg subtest; /a/bc/x not
		} {
			got, err := list(timeout(t), clientAs(t, c, pki, 0, tc.identity), tc.prefix)
			if err != nil && tc.want != "" {
				t.Errorf("List(%s) as %s: %v", tc.prefix, tc.identity, err)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("List(%s) as %s = %v, want [%s]", tc.prefix, tc.identity, got, tc.want)
			}
		}

		// A change host1 may not read moves its stream's token: bookmarks
		// come to cover the write, and no message carries its node.
		next := watch(t, clientAs(t, c, pki, 0, "host1"), "/", nil)
		for msg := next(); !msg.Synced; msg = next() {
		}
		w := put(t, c.Client(0), "/data/other/key", "changed").Nodes[0]
		for {
			msg := next()
			if len(msg.Nodes) > 0 {
				t.Fatalf("Watch(/) as host1 after a change elsewhere sent nodes %v", paths(msg))
			}
			if msg.Bookmark != nil && wire.VectorFromProto(msg.Bookmark).Covers(w.Origin, w.Seq) {
				break
			}
		}
	})

	t.Run("nobody is refused List and Watch", func(t *testing.T) {
		client := clientAs(t, c, pki, 0, "nobody")
		for _, p := range []string{"/", "/data", "/data/host1"} {
			got, err := list(timeout(t), client, p)
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("List(%s) as nobody = %v, %v; want PermissionDenied", p, got, err)
			}
		}
		stream, err := client.Watch(timeout(t), &repldspb.WatchRequest{Prefix: "/"})
		if err == nil {
			var msg *repldspb.WatchResponse
			msg, err = stream.Recv()
			if err == nil {
				t.Errorf("Watch(/) as nobody sent %v, want PermissionDenied", paths(msg))
			}
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Watch(/) as nobody = %v, want PermissionDenied", err)
		}
	})

	t.Run("Status is for peers and readers", func(t *testing.T) {
		if _, err := clientAs(t, c, pki, 0, "nobody").Status(timeout(t), &repldspb.StatusRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Status as nobody = %v, want PermissionDenied", err)
		}
		if _, err := clientAs(t, c, pki, 0, "host1").Status(timeout(t), &repldspb.StatusRequest{}); err != nil {
			t.Errorf("Status as host1, a reader: %v", err)
		}
	})

	t.Run("batch with one forbidden path", func(t *testing.T) {
		client := clientAs(t, c, pki, 0, "seg")
		_, err := client.Store(timeout(t), storeReq("/a/b/batch1", "/a/bc/batch", "/a/b/batch2"))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Store of a batch with a forbidden path = %v, want PermissionDenied", err)
		}
		for _, p := range []string{"/a/b/batch1", "/a/bc/batch", "/a/b/batch2"} {
			if hasNode(t, c.Server(0), p) {
				t.Errorf("%s was written by a refused batch", p)
			}
		}
	})
}

// list returns the paths a List of p (recursive) streams.
func list(ctx context.Context, client repldspb.RepldsClient, p string) ([]string, error) {
	stream, err := client.List(ctx, &repldspb.ListRequest{Path: p, Recursive: true})
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, e := range msg.Entries {
			out = append(out, e.Path)
		}
	}
}

func TestSecurity_WatchShowsOnlyReadableNodes(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, aclTestRules))
	put(t, c.Client(0), "/data/host1/a", "1", "/data/host1/sub/b", "2", "/data/host1x/c", "3",
		"/data/host2/d", "4", "/other", "5")

	next := watch(t, clientAs(t, c, pki, 0, "host1"), "/", nil)
	got := untilSynced(next)
	if want := "/data/host1/a,/data/host1/sub/b"; strings.Join(got, ",") != want {
		t.Errorf("replay of / as host1 = %v, want %s", got, want)
	}

	// Changes elsewhere are committed first: were they sent, they would
	// come before the readable one.
	put(t, c.Client(0), "/data/host2/d", "4b", "/data/host1x/c", "3b")
	put(t, c.Client(0), "/other", "5b")
	put(t, c.Client(0), "/data/host1/a", "1b", "/data/host2/e", "6")
	msg := next()
	for len(msg.Nodes) == 0 {
		msg = next()
	}
	if got, want := strings.Join(paths(msg), ","), "/data/host1/a"; got != want {
		t.Errorf("live batch as host1 = %s, want %s", got, want)
	}
	if string(msg.Nodes[0].Data) != "1b" {
		t.Errorf("live node data = %q, want %q", msg.Nodes[0].Data, "1b")
	}
}

// logCounter counts the log records of the servers it is installed on
// (Option) that match, whatever the log level.
type logCounter struct {
	match func(r slog.Record) bool

	mu sync.Mutex
	n  int
}

func (lc *logCounter) count() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.n
}

// Option installs the counter on a server's logger.
func (lc *logCounter) Option() servertest.Option {
	return func(i int, cfg *server.Config) {
		cfg.Logger = slog.New(&countingHandler{next: cfg.Logger.Handler(), lc: lc})
	}
}

// attr returns the string value of the record's attribute key.
func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// countingHandler feeds every record to a logCounter and passes those its
// next handler wants on to it.
type countingHandler struct {
	next slog.Handler
	lc   *logCounter
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.lc.match(r) {
		h.lc.mu.Lock()
		h.lc.n++
		h.lc.mu.Unlock()
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{next: h.next.WithAttrs(as), lc: h.lc}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{next: h.next.WithGroup(name), lc: h.lc}
}

// peerRefusals counts the peer requests a server refuses to identity id.
func peerRefusals(id string) *logCounter {
	return &logCounter{match: func(r slog.Record) bool {
		return r.Message == "access denied" && attr(r, "identity") == id && attr(r, "op") == "peer"
	}}
}

// waitRefused waits until lc counted n more refusals than it had at from,
// or s has one of paths (which the caller then reports).
func waitRefused(t *testing.T, lc *logCounter, from, n int, s *server.Server, paths ...string) {
	t.Helper()
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		for _, p := range paths {
			if hasNode(t, s, p) {
				return nil
			}
		}
		if got := lc.count() - from; got < n {
			return fmt.Errorf("%d peer requests refused since the write, want %d", got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// withCreds returns dial options presenting the certificate of files.
func withCreds(t *testing.T, pki *servertest.PKI, certFile, keyFile string) []grpc.DialOption {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.TLSConfig(t, "unused")
	cfg.Certificates = []tls.Certificate{pair}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
}

func TestSecurity_ServerWithoutPeerPermissionGetsNoData(t *testing.T) {
	for _, tc := range []struct {
		name     string
		identity string // of server 2
	}{
		{"identity not in the ACLs", "server2"},
		// A client may read and write everything, but is no peer.
		{"client certificate", "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := servertest.NewPKI(t)
			refusals := peerRefusals(tc.identity)
			acls := "server0 peer\nserver1 peer\nclient / write\nclient / read\n"
			c := servertest.NewCluster(t, 2, servertest.WithTLS(pki, acls), refusals.Option())
			// Server 2 has a valid certificate of the cluster's CA and the
			// gossip key, but its identity is no peer.
			c.AddWith(servertest.WithIdentity(pki, tc.identity))

			put(t, c.Client(0), "/data/before", "1")
			from := refusals.count()
			put(t, c.Client(0), "/data/after", "2")
			c.Wait(10*time.Second, "server 1 to have the writes", func() error {
				for _, p := range []string{"/data/before", "/data/after"} {
					if !hasNode(t, c.Server(1), p) {
						return fmt.Errorf("server 1 lacks %s", p)
					}
				}
				return nil
			})
			// Server 2 keeps asking (to join, to sync) and keeps being
			// refused.
			waitRefused(t, refusals, from, 6, c.Server(2), "/data/before", "/data/after")
			for _, p := range []string{"/data/before", "/data/after"} {
				if hasNode(t, c.Server(2), p) {
					t.Errorf("server 2, not a peer, has %s", p)
				}
			}

			// Its certificate gets nothing from the replication RPCs either.
			cfg := c.Config(2).TLS
			internal := repldspb.NewInternalClient(servertest.Dial(t, c.Addr(0), withCreds(t, pki, cfg.Cert, cfg.Key)...))
			checkPeerRPCsRefused(t, internal, c.Server(0))
		})
	}
}

// checkPeerRPCsRefused checks that every replication RPC of internal, a
// client of s, is refused with PermissionDenied.
func checkPeerRPCsRefused(t *testing.T, internal repldspb.InternalClient, s *server.Server) {
	t.Helper()
	sync, err := internal.Sync(timeout(t), &repldspb.SyncRequest{Vector: &repldspb.Vector{}})
	if err == nil {
		var msg *repldspb.SyncResponse
		msg, err = sync.Recv()
		if err == nil {
			t.Errorf("Sync sent %d nodes to a non-peer", len(msg.Nodes))
		}
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Sync = %v, want PermissionDenied", err)
	}

	push, err := internal.Push(timeout(t))
	if err == nil {
		// A send error (the server already ended the stream) is reported
		// by CloseAndRecv.
		_ = push.Send(&repldspb.PushRequest{Origin: 99, Nodes: []*repldspb.Node{
			{Path: "/data/pushed", Version: 1 << 40, Origin: 99, Seq: 1, Data: []byte("x")},
		}})
		_, err = push.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Push = %v, want PermissionDenied", err)
	}
	if hasNode(t, s, "/data/pushed") {
		t.Error("a push from a non-peer was applied")
	}
	if _, err := internal.Hello(timeout(t), &repldspb.HelloRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Hello = %v, want PermissionDenied", err)
	}
	_, err = internal.Tree(timeout(t), &repldspb.TreeRequest{Level: 0, Index: []uint32{0}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Tree = %v, want PermissionDenied", err)
	}
	buckets, err := internal.Buckets(timeout(t), &repldspb.BucketRequest{Buckets: []uint32{0}})
	if err == nil {
		_, err = buckets.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Buckets = %v, want PermissionDenied", err)
	}
}

func TestSecurity_PeerRevokedByReload(t *testing.T) {
	pki := servertest.NewPKI(t)
	refusals := peerRefusals("server2")
	c := servertest.NewCluster(t, 3, servertest.WithTLS(pki, peersACL), refusals.Option())
	put(t, c.Client(0), "/data/before", "1")
	waitData(t, c, "/data/before", []byte("1"))

	// Server 2 stays a member (it has the gossip key) but loses the peer
	// permission everywhere.
	if err := c.SetACL("server0 peer\nserver1 peer\nclient / write\nclient / read\n"); err != nil {
		t.Fatal(err)
	}
	// The first write finds the push streams opened before the reload; the
	// second those the servers opened since.
	for _, p := range []string{"/data/after", "/data/later"} {
		from := refusals.count()
		put(t, c.Client(0), p, "2")
		c.Wait(10*time.Second, "server 1 to have "+p, func() error {
			if !hasNode(t, c.Server(1), p) {
				return fmt.Errorf("server 1 lacks %s", p)
			}
			return nil
		})
		waitRefused(t, refusals, from, 6, c.Server(2), p)
		if hasNode(t, c.Server(2), p) {
			t.Errorf("server 2, no longer a peer, has %s", p)
		}
	}
	cfg := c.Config(2).TLS
	internal := repldspb.NewInternalClient(servertest.Dial(t, c.Addr(0), withCreds(t, pki, cfg.Cert, cfg.Key)...))
	checkPeerRPCsRefused(t, internal, c.Server(0))
}

func TestSecurity_GossipNeedsTheKey(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 2, servertest.WithTLS(pki, peersACL+"server3 peer\n"))
	// Server 2 passes TLS and the peer check (Hello) but encrypts its
	// membership traffic with another key.
	joinFailures := &logCounter{match: func(r slog.Record) bool {
		return r.Message == "join failed" && strings.HasPrefix(attr(r, "err"), "join ")
	}}
	otherKey := servertest.NewGossipKey(t)
	i := c.AddWith(func(i int, cfg *server.Config) { cfg.GossipKeyFile = otherKey }, joinFailures.Option())
	c.Wait(10*time.Second, "failed memberlist joins of server 2", func() error {
		if n := joinFailures.count(); n < 4 {
			return fmt.Errorf("%d failed joins, want 4", n)
		}
		return nil
	})
	for j, want := range []int{2, 2, 1} {
		if got := c.Server(j).AliveMembers(); got != want {
			t.Errorf("server %d sees %d alive members, want %d", j, got, want)
		}
	}

	// A server like it but with the cluster's key joins: the refusal was
	// about the key.
	c.Stop(i)
	c.Add()
}

func TestSecurity_ACLFile(t *testing.T) {
	pki := servertest.NewPKI(t)
	t.Run("malformed file stops New", func(t *testing.T) {
		cfg := server.DefaultConfig()
		cfg.Addr = "127.0.0.1:0"
		cfg.GossipAddr = "127.0.0.1:0"
		cfg.DataDir = t.TempDir()
		cfg.TLS = pki.Files(t, "server0")
		cfg.GossipKeyFile = pki.GossipKeyFile()
		cfg.ACLFile = pki.WriteACL(t, "server0 peer\n# fine so far\nclient /data frobnicate\n")
		s, err := server.New(cfg)
		if err == nil {
			s.Close()
			t.Fatal("New with a malformed ACL file succeeded")
		}
		if !strings.Contains(err.Error(), "line 3") {
			t.Errorf("New error %q does not name line 3", err)
		}
	})

	t.Run("reload", func(t *testing.T) {
		c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, "client / write\nclient /data read\n"))
		put(t, c.Client(0), "/data/x", "x", "/other/y", "y")
		get := func(p string) error {
			_, err := c.Client(0).Get(timeout(t), &repldspb.GetRequest{Path: p})
			return err
		}
		if err := get("/other/y"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Get(/other/y) before reload = %v, want PermissionDenied", err)
		}
		if err := c.SetACL("client / write\nclient / read\n"); err != nil {
			t.Fatalf("reload of a good file: %v", err)
		}
		if err := get("/other/y"); err != nil {
			t.Fatalf("Get(/other/y) after reload = %v, want success", err)
		}

		err := c.SetACL("client /data read\nclient / bogus\n")
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("reload of a malformed file = %v, want an error naming line 2", err)
		}
		// The previous rules are in force: not the new ones, and not none.
		if err := get("/other/y"); err != nil {
			t.Errorf("Get(/other/y) after a refused reload = %v, want success", err)
		}
		_, err = clientAs(t, c, pki, 0, "nobody").Get(timeout(t), &repldspb.GetRequest{Path: "/data/x"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Get(/data/x) as nobody after a refused reload = %v, want PermissionDenied", err)
		}
	})
}

// servedSerial returns the serial number of the certificate server addr
// presents to a new TLS connection.
func servedSerial(t *testing.T, pki *servertest.PKI, addr string) string {
	t.Helper()
	cfg := pki.TLSConfig(t, "client")
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("tls.Dial(%s): %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func serialOf(t *testing.T, certFile string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.Text(16)
}

func TestSecurity_CertificateRotation(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""))
	files := c.Config(0).TLS
	first := serialOf(t, files.Cert)
	if got := servedSerial(t, pki, c.Addr(0)); got != first {
		t.Fatalf("served serial %s, want %s (the certificate file's)", got, first)
	}

	// Reload picks up the new files.
	second := pki.Rotate(t, files, "server0").SerialNumber.Text(16)
	if err := c.Server(0).Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, pki, c.Addr(0)); got != second {
		t.Errorf("served serial after Reload = %s, want %s", got, second)
	}

	// So does a new handshake after the files change, without Reload.
	third := pki.Rotate(t, files, "server0").SerialNumber.Text(16)
	c.Wait(10*time.Second, "the rotated certificate", func() error {
		if got := servedSerial(t, pki, c.Addr(0)); got != third {
			return fmt.Errorf("served serial %s, want %s", got, third)
		}
		return nil
	})
	// The server still serves its clients.
	put(t, c.Client(0), "/after-rotation", "x")
}

func TestConfig_ValidateSecurity(t *testing.T) {
	pki := servertest.NewPKI(t)
	files := pki.Files(t, "server0")
	acls := pki.WriteACL(t, "server0 peer\n")
	for _, tc := range []struct {
		name string
		set  func(*server.Config)
		want []string
	}{
		{"acls without TLS", func(c *server.Config) { c.ACLFile = acls }, []string{"--acls", "--tls-cert"}},
		{"TLS without gossip key", func(c *server.Config) { c.TLS = files }, []string{"--gossip-key-file"}},
		{"half TLS", func(c *server.Config) { c.TLS.Cert = files.Cert; c.GossipKeyFile = pki.GossipKeyFile() }, []string{"--tls-key", "--tls-ca"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.DefaultConfig()
			cfg.Addr = "127.0.0.1:0"
			cfg.DataDir = t.TempDir()
			tc.set(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to name %s", err, w)
				}
			}
			if s, err := server.New(cfg); err == nil {
				s.Close()
				t.Error("New accepted the configuration")
			}
		})
	}
}

// TestSecurity_ACLChangesReachWatches checks that a Watch follows ACL
// reloads: an open stream ends so that its client reconnects under the new
// rules, and a client resuming with a token issued under other rules gets a
// reset and a full replay of what it may read now, gaining a newly granted
// subtree and dropping a revoked one.
func TestSecurity_ACLChangesReachWatches(t *testing.T) {
	const base = "client / write\nclient / read\nhost1 /data/a read\n"
	const granted = base + "host1 /data/b read\n"
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, base))
	put(t, c.Client(0), "/data/a/x", "1", "/data/b/y", "2")
	host1 := clientAs(t, c, pki, 0, "host1")

	// replay reads a stream up to its synced bookmark.
	replay := func(stream repldspb.Replds_WatchClient) (got []string, reset bool, token *repldspb.Vector) {
		t.Helper()
		for {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			reset = reset || msg.Reset_
			got = append(got, paths(msg)...)
			if msg.Synced {
				return got, reset, msg.Bookmark
			}
		}
	}
	// ended waits for an open stream to end with Unavailable.
	ended := func(stream repldspb.Replds_WatchClient) {
		t.Helper()
		for {
			msg, err := stream.Recv()
			if err != nil {
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("Watch ended with %v, want Unavailable", err)
				}
				return
			}
			for _, n := range msg.Nodes {
				if n.Path == "/data/b/y" && n.Version > 0 && string(n.Data) == "after-revoke" {
					t.Fatalf("open Watch sent %s written after read on /data/b was revoked", n.Path)
				}
			}
		}
	}
	open := func(token *repldspb.Vector) repldspb.Replds_WatchClient {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		stream, err := host1.Watch(ctx, &repldspb.WatchRequest{Prefix: "/data", Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return stream
	}

	s := open(nil)
	got, _, token := replay(s)
	if strings.Join(got, ",") != "/data/a/x" {
		t.Fatalf("first replay = %v, want /data/a/x", got)
	}
	// What host1 may read rides beside the vector, not as an entry of it.
	if token.Scope == 0 {
		t.Errorf("bookmark under ACLs has no scope")
	}
	for _, e := range token.Entries {
		if e.Origin == 0 {
			t.Errorf("bookmark has an entry for origin 0: %v", token.Entries)
		}
	}

	// Grant: the open stream ends; resuming gets a reset and /data/b too.
	if err := c.SetACL(granted); err != nil {
		t.Fatal(err)
	}
	ended(s)
	s = open(token)
	got, reset, token := replay(s)
	if !reset || strings.Join(got, ",") != "/data/a/x,/data/b/y" {
		t.Errorf("resumed after a grant: reset %v, replay %v; want a reset and /data/a/x,/data/b/y", reset, got)
	}

	// Revoke: the open stream ends before it can carry a new write under
	// /data/b; resuming gets a reset without /data/b.
	if err := c.SetACL(base); err != nil {
		t.Fatal(err)
	}
	put(t, c.Client(0), "/data/b/y", "after-revoke")
	ended(s)
	got, reset, _ = replay(open(token))
	if !reset || strings.Join(got, ",") != "/data/a/x" {
		t.Errorf("resumed after a revoke: reset %v, replay %v; want a reset and /data/a/x only", reset, got)
	}
}
