package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// withHTTP serves the operations endpoints of every server on a port of
// its own.
func withHTTP(i int, cfg *server.Config) { cfg.HTTPAddr = "127.0.0.1:0" }

// sample is one value of a scrape: a counter, gauge or untyped value, or a
// histogram's _count or _sum.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// samples is a parsed /metrics page.
type samples []sample

// get sums the samples named name whose labels include kv (label, value,
// label, value...).
func (ss samples) get(name string, kv ...string) float64 {
	total := 0.0
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for i := 0; i < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// has reports whether a sample is named name.
func (ss samples) has(name string) bool {
	for _, s := range ss {
		if s.name == name {
			return true
		}
	}
	return false
}

// httpGet fetches url and returns the status code and body.
func httpGet(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// scrapeURL fetches a /metrics page and parses it with the Prometheus text
// parser.
func scrapeURL(client *http.Client, url string) (samples, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET %s: Content-Type %q, want text/plain", url, ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	var out samples
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out = append(out, sample{name, labels, m.GetCounter().GetValue()})
			case m.Gauge != nil:
				out = append(out, sample{name, labels, m.GetGauge().GetValue()})
			case m.Untyped != nil:
				out = append(out, sample{name, labels, m.GetUntyped().GetValue()})
			case m.Histogram != nil:
				out = append(out, sample{name + "_count", labels, float64(m.GetHistogram().GetSampleCount())})
				out = append(out, sample{name + "_sum", labels, m.GetHistogram().GetSampleSum()})
			}
		}
	}
	return out, nil
}

// scrape returns the parsed /metrics of server i of a plain cluster.
func scrape(t *testing.T, c *servertest.Cluster, i int) samples {
	t.Helper()
	ss, err := scrapeURL(http.DefaultClient, "http://"+c.Server(i).HTTPAddr()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// waitMetrics waits until cond holds for the scrapes of servers idx.
func waitMetrics(t *testing.T, c *servertest.Cluster, what string, cond func(ss []samples) error, idx ...int) {
	t.Helper()
	c.Wait(10*time.Second, what, func() error {
		var all []samples
		for _, i := range idx {
			ss, err := scrapeURL(http.DefaultClient, "http://"+c.Server(i).HTTPAddr()+"/metrics")
			if err != nil {
				return err
			}
			all = append(all, ss)
		}
		return cond(all)
	})
}

// want returns an error naming the metric unless got == want.
func want(name string, got, want float64) error {
	if got != want {
		return fmt.Errorf("%s = %v, want %v", name, got, want)
	}
	return nil
}

// atLeast returns an error naming the metric unless got >= min.
func atLeast(name string, got, min float64) error {
	if got < min {
		return fmt.Errorf("%s = %v, want >= %v", name, got, min)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestMetrics_StoreAndSync(t *testing.T) {
	c := servertest.NewCluster(t, 2, withHTTP)
	name0, name1 := c.Server(0).Name(), c.Server(1).Name()
	before := scrape(t, c, 0)
	for _, name := range []string{
		"replds_store_nodes", "replds_store_bytes", "replds_writes_total", "replds_members",
		"replds_watch_streams", "replds_build_info", "go_goroutines",
	} {
		if !before.has(name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if got := before.get("replds_writes_total"); got != 0 {
		t.Errorf("replds_writes_total = %v before any write", got)
	}

	// Three nodes stored on server 0 reach server 1 (by push, or sync).
	put(t, c.Client(0), "/m/a", "1", "/m/b", "22", "/m/c", "333")
	c.WaitConverged(10 * time.Second)
	waitMetrics(t, c, "metrics after a store", func(ss []samples) error {
		s0, s1 := ss[0], ss[1]
		return firstErr(
			want("s0 replds_writes_total", s0.get("replds_writes_total"), 3),
			want("s0 replds_store_nodes", s0.get("replds_store_nodes"), 3),
			want("s1 replds_store_nodes", s1.get("replds_store_nodes"), 3),
			want("s1 replds_store_bytes", s1.get("replds_store_bytes"), 6),
			want("s1 replds_writes_total", s1.get("replds_writes_total"), 0),
			want("s0 Store OK requests", s0.get("replds_grpc_requests_total", "service", "Replds", "method", "Store", "code", "OK"), 1),
			want("s0 Store latency count", s0.get("replds_grpc_request_duration_seconds_count", "method", "Store", "code", "OK"), 1),
			atLeast("s0 write commits", s0.get("replds_store_commit_seconds_count", "kind", "write"), 1),
			atLeast("s1 apply commits", s1.get("replds_store_commit_seconds_count", "kind", "apply"), 1),
			atLeast("s1 nodes received", s1.get("replds_push_received_nodes_total")+s1.get("replds_sync_nodes_received_total", "peer", name0), 3),
			atLeast("s0 sync rounds sent", s0.get("replds_sync_rounds_sent_total", "peer", name1, "result", "ok"), 1),
			atLeast("s0 sync bytes sent", s0.get("replds_sync_rounds_sent_bytes_total", "peer", name1), 1),
			atLeast("s1 sync rounds received", s1.get("replds_sync_rounds_received_total"), 1),
			atLeast("s1 sync bytes received", s1.get("replds_sync_rounds_received_bytes_total"), 1),
			want("s0 alive members", s0.get("replds_members", "state", "alive"), 2),
			want("s0 ready", s0.get("replds_ready"), 1),
			// What server 0 pushed is what server 1, its only peer,
			// received by push.
			want("s0 push messages sent", s0.get("replds_push_sent_messages_total", "peer", name1), s1.get("replds_push_received_messages_total")),
			want("s0 push nodes sent", s0.get("replds_push_sent_nodes_total", "peer", name1), s1.get("replds_push_received_nodes_total")),
			want("s0 push bytes sent", s0.get("replds_push_sent_bytes_total", "peer", name1), s1.get("replds_push_received_bytes_total")),
		)
	}, 0, 1)

	// A Watch stream is counted while open, with what it is sent.
	next := watch(t, c.Client(1), "/m", nil)
	if msg := next(); len(msg.Nodes) != 3 {
		t.Fatalf("Watch replay = %d nodes, want 3", len(msg.Nodes))
	}
	waitMetrics(t, c, "watch metrics", func(ss []samples) error {
		return firstErr(
			want("replds_watch_streams", ss[0].get("replds_watch_streams"), 1),
			atLeast("replds_watch_nodes_sent_total", ss[0].get("replds_watch_nodes_sent_total"), 3),
			atLeast("replds_watch_messages_sent_total", ss[0].get("replds_watch_messages_sent_total"), 2),
		)
	}, 1)

	// Writes made while server 1 is down reach it through sync (the
	// pusher resumes from the head), and it counts them per peer.
	c.Stop(1)
	waitMetrics(t, c, "a member that left", func(ss []samples) error {
		return firstErr(
			want("alive", ss[0].get("replds_members", "state", "alive"), 1),
			want("left", ss[0].get("replds_members", "state", "left"), 1),
		)
	}, 0)
	put(t, c.Client(0), "/m/d", "4", "/m/e", "5", "/m/f", "6", "/m/g", "7")
	c.Restart(1)
	c.WaitConverged(10 * time.Second)
	waitMetrics(t, c, "metrics after a catch-up", func(ss []samples) error {
		s0, s1 := ss[0], ss[1]
		return firstErr(
			want("s0 replds_writes_total", s0.get("replds_writes_total"), 7),
			want("s1 replds_store_nodes", s1.get("replds_store_nodes"), 7),
			atLeast("s1 nodes received by sync", s1.get("replds_sync_nodes_received_total", "peer", name0), 4),
			want("s0 alive members", s0.get("replds_members", "state", "alive"), 2),
			want("s0 left members", s0.get("replds_members", "state", "left"), 0),
		)
	}, 0, 1)

	// A node no vector accounts for is found by hash-tree repair.
	orphan := store.Node{Path: "/orphan", Meta: store.Meta{Version: 1 << 40, Origin: 42, Seq: 7, Size: 1}, Data: []byte("o")}
	if _, err := c.Server(1).DB().Apply(context.Background(), []store.Node{orphan}, nil); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, c, "repair metrics", func(ss []samples) error {
		return firstErr(
			atLeast("repairs", ss[0].get("replds_repairs_total", "result", "ok")+ss[1].get("replds_repairs_total", "result", "ok"), 1),
			want("repaired nodes", ss[0].get("replds_repair_nodes_total")+ss[1].get("replds_repair_nodes_total"), 1),
		)
	}, 0, 1)
}

func TestMetrics_ReplicationLag(t *testing.T) {
	// Server 1 runs no sync rounds of its own: the test runs them.
	c := servertest.NewCluster(t, 2, withHTTP, func(i int, cfg *server.Config) {
		if i == 1 {
			cfg.SyncInterval = time.Hour
		}
	})
	name0 := c.Server(0).Name()
	c.Stop(1)
	put(t, c.Client(0), "/l/1", "a", "/l/2", "b")
	put(t, c.Client(0), "/l/3", "c")
	c.Restart(1)
	c.WaitMembers(10 * time.Second)
	ctx := context.Background()
	if err := server.SyncRoundWith(ctx, c.Server(1), name0, c.Addr(0)); err != nil {
		t.Fatal(err)
	}
	s1 := scrape(t, c, 1)
	if got := s1.get("replds_replication_lag_changes", "peer", name0); got != 3 {
		t.Errorf("replds_replication_lag_changes = %v, want 3", got)
	}
	if got := s1.get("replds_replication_lag_seconds", "peer", name0); got <= 0 || got > 60 {
		t.Errorf("replds_replication_lag_seconds = %v, want in (0, 60]", got)
	}
	if got := s1.get("replds_sync_last_success_timestamp_seconds", "peer", name0); time.Since(time.Unix(int64(got), 0)) > time.Minute {
		t.Errorf("replds_sync_last_success_timestamp_seconds = %v, want about now", got)
	}
	st, err := c.Client(1).Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].Name != name0 || st.Peers[0].Changes != 3 {
		t.Errorf("Status peers = %v, want %s with 3 changes", st.Peers, name0)
	}
	if !st.Ready || st.Version == "" || st.Nodes != 3 {
		t.Errorf("Status = ready %v, version %q, nodes %d; want ready, a version, 3 nodes", st.Ready, st.Version, st.Nodes)
	}

	// Caught up: the next round finds nothing missing.
	if err := server.SyncRoundWith(ctx, c.Server(1), name0, c.Addr(0)); err != nil {
		t.Fatal(err)
	}
	s1 = scrape(t, c, 1)
	if got := s1.get("replds_replication_lag_changes", "peer", name0); got != 0 {
		t.Errorf("after catching up, replds_replication_lag_changes = %v, want 0", got)
	}
	if got := s1.get("replds_replication_lag_seconds", "peer", name0); got != 0 {
		t.Errorf("after catching up, replds_replication_lag_seconds = %v, want 0", got)
	}
}

func TestHTTP_ReadyOnlyAfterJoining(t *testing.T) {
	c := servertest.NewCluster(t, 2, withHTTP)
	get := func(path string) (int, string) {
		t.Helper()
		code, body, err := httpGet(http.DefaultClient, "http://"+c.Server(0).HTTPAddr()+path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	c.Wait(10*time.Second, "ready", func() error {
		if code, body := get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})

	// The path /healthz reads may hold a node (written by a server: it is
	// reserved).
	if _, err := c.Server(0).Writer().Write(context.Background(), []store.Write{{Path: "/_replds/healthz", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz with /_replds/healthz written = %d %q, want 200 ok", code, body)
	}

	// Server 0 restarts with its only peer down: up, but not ready.
	c.Stop(1)
	c.Restart(0)
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not joined") {
		t.Errorf("/readyz alone = %d %q, want 503 not joined", code, body)
	}
	if code, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
	c.Restart(1)
	c.Wait(10*time.Second, "ready after joining", func() error {
		if code, body := get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	if n := c.Server(0).AliveMembers(); n != 2 {
		t.Errorf("ready with %d alive members, want 2", n)
	}
}

func TestHTTP_AloneByConfigurationIsReady(t *testing.T) {
	c := servertest.NewCluster(t, 1, withHTTP)
	code, body, err := httpGet(http.DefaultClient, "http://"+c.Server(0).HTTPAddr()+"/readyz")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "alone") {
		t.Errorf("/readyz = %d %q %v, want 200 alone", code, body, err)
	}
}

func TestHTTP_TLS(t *testing.T) {
	pki := servertest.NewPKI(t)
	acls := "server0 peer\nserver1 peer\nclient / read\n"
	c := servertest.NewCluster(t, 2, servertest.WithTLS(pki, acls), withHTTP, func(i int, cfg *server.Config) {
		cfg.HTTPHealthzNoCert = i == 0
	})
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.TLSConfig(t, "prometheus")}}
	noCertCfg := pki.TLSConfig(t, "none")
	noCertCfg.Certificates = nil
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: noCertCfg}}
	plain := http.DefaultClient
	url := func(i int, path string) string { return "https://" + c.Server(i).HTTPAddr() + path }

	// A write the ACLs deny is counted by operation.
	_, err := c.Client(0).Store(context.Background(), storeReq("/denied"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Store = %v, want PermissionDenied", err)
	}
	ss, err := scrapeURL(withCert, url(0, "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ss.get("replds_acl_denied_total", "op", "write"); got != 1 {
		t.Errorf("replds_acl_denied_total{op=write} = %v, want 1", got)
	}
	if got := ss.get("replds_grpc_requests_total", "method", "Store", "code", "PermissionDenied"); got != 1 {
		t.Errorf("Store PermissionDenied requests = %v, want 1", got)
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		server int
		path   string
		code   int // 0: the request fails (TLS handshake, or plain HTTP)
	}{
		{"cert metrics", withCert, 1, "/metrics", 200},
		{"cert healthz", withCert, 1, "/healthz", 200},
		{"cert readyz", withCert, 0, "/readyz", 200},
		{"no cert healthz allowed", noCert, 0, "/healthz", 200},
		{"no cert metrics", noCert, 0, "/metrics", 403},
		{"no cert readyz", noCert, 0, "/readyz", 403},
		{"no cert healthz not allowed", noCert, 1, "/healthz", 0},
		{"no cert metrics strict", noCert, 1, "/metrics", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := servertest.Eventually(context.Background(), 10*time.Second, func() error {
				code, body, err := httpGet(tc.client, url(tc.server, tc.path))
				if tc.code == 0 {
					if err == nil {
						return fmt.Errorf("GET %s = %d %q, want a failed handshake", tc.path, code, body)
					}
					return nil
				}
				if err != nil || code != tc.code {
					return fmt.Errorf("GET %s = %d %q %v, want %d", tc.path, code, body, err, tc.code)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	// Plain HTTP to a TLS listener gets nothing useful.
	if code, _, err := httpGet(plain, "http://"+c.Server(0).HTTPAddr()+"/metrics"); err == nil && code == 200 {
		t.Errorf("plain HTTP /metrics = 200 on a TLS server")
	}
}

// TestCluster_SyncRoundAdvertisesReadiness: a server with a peer becomes
// ready at its first completed sync round, whoever ran it (here the test,
// through SyncRoundWith, with the server's own loop idle), and the other
// members learn it.
func TestCluster_SyncRoundAdvertisesReadiness(t *testing.T) {
	c := servertest.NewCluster(t, 2, func(i int, cfg *server.Config) {
		cfg.SyncInterval = time.Hour
	})
	ready := func() (bool, error) {
		for _, m := range c.Server(0).Membership().Members() {
			if m.Name == c.Server(1).Name() {
				return m.Ready, nil
			}
		}
		return false, fmt.Errorf("server 0 does not list server 1")
	}
	if r, err := ready(); err != nil || r {
		t.Fatalf("server 1 ready in server 0's view before any sync round = %v, %v; want false", r, err)
	}
	if err := server.SyncRoundWith(context.Background(), c.Server(1), c.Server(0).Name(), c.Addr(0)); err != nil {
		t.Fatal(err)
	}
	c.Wait(10*time.Second, "server 1 ready in server 0's view", func() error {
		if r, err := ready(); err != nil || !r {
			return fmt.Errorf("ready = %v, %v", r, err)
		}
		return nil
	})
}
