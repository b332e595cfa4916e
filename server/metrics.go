package server

import (
	"context"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/buildinfo"
	"github.com/replds/replds/lww"
	repldspb "github.com/replds/replds/proto"
)

// metrics holds a server's Prometheus collectors in a registry of its own,
// not the global one, so that the servers of one process (an in-process
// test cluster) do not collide. Gauges of what the store and the membership
// hold are read at scrape time. All methods are safe for concurrent use.
//
// Byte counts are protobuf message sizes (proto.Size): the payload, without
// gRPC framing, HTTP/2 or TLS overhead.
type metrics struct {
	reg *prometheus.Registry

	writes        prometheus.Counter
	commitSeconds *prometheus.HistogramVec // kind: write | apply

	pushSentMessages *prometheus.CounterVec // peer
	pushSentNodes    *prometheus.CounterVec // peer
	pushSentBytes    *prometheus.CounterVec // peer
	pushRecvMessages prometheus.Counter
	pushRecvNodes    prometheus.Counter
	pushRecvBytes    prometheus.Counter

	syncSent      *prometheus.CounterVec // peer, result
	syncSentBytes *prometheus.CounterVec // peer
	syncSentNodes *prometheus.CounterVec // peer
	syncRecv      prometheus.Counter
	syncRecvBytes prometheus.Counter

	repairs     *prometheus.CounterVec // result
	repairNodes prometheus.Counter

	watchStreams  prometheus.Gauge
	watchMessages prometheus.Counter
	watchNodes    prometheus.Counter

	aclDenied *prometheus.CounterVec // op
	refusals  *prometheus.CounterVec // reason

	rpcs       *prometheus.CounterVec   // service, method, code
	rpcSeconds *prometheus.HistogramVec // service, method, code

	mu sync.Mutex
	// tombs counts tombstone collection (tombstones.go).
	tombs tombstoneMetrics
	// lags holds, per peer member name, the lag measured by the last
	// successful sync round with it.
	lags map[string]peerLag
}

// peerLag is how far behind one peer this server was at the start of the
// last successful sync round with it.
type peerLag struct {
	// changes is the sum over origins of max(0, peer[o] - ours[o]).
	changes uint64
	// seconds is the age of the oldest node that round brought (now minus
	// the wall clock part of its version); 0 when it brought none.
	seconds float64
	// at is when the round ended.
	at time.Time
}

// newMetrics creates the collectors of s and registers them. Gauge
// functions read s.store and s.mem at scrape time: scrapes must not start
// before New has set them.
func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), lags: map[string]peerLag{}}
	f := factory{m.reg}
	m.writes = f.counter("replds_writes_total",
		"Nodes changed by writes this server stamped: client Store calls and the server's own writes (no-op writes excluded).")
	m.commitSeconds = f.histogramVec("replds_store_commit_seconds",
		"Time from handing a batch to the store until it is durable (group commit wait and fsync included); kind is write (client batches) or apply (replicated ones).",
		prometheus.ExponentialBuckets(0.0005, 2, 14), "kind")

	m.pushSentMessages = f.counterVec("replds_push_sent_messages_total", "Push messages sent to a peer.", "peer")
	m.pushSentNodes = f.counterVec("replds_push_sent_nodes_total", "Nodes pushed to a peer.", "peer")
	m.pushSentBytes = f.counterVec("replds_push_sent_bytes_total", "Bytes of push messages sent to a peer.", "peer")
	m.pushRecvMessages = f.counter("replds_push_received_messages_total", "Push messages received from peers.")
	m.pushRecvNodes = f.counter("replds_push_received_nodes_total", "Nodes received in pushes from peers.")
	m.pushRecvBytes = f.counter("replds_push_received_bytes_total", "Bytes of push messages received from peers.")

	m.syncSent = f.counterVec("replds_sync_rounds_sent_total",
		"Digest sync rounds this server started with a peer, by result (ok or error).", "peer", "result")
	m.syncSentBytes = f.counterVec("replds_sync_rounds_sent_bytes_total",
		"Bytes of the sync rounds this server started (its digest and the peer's answer; repair traffic excluded).", "peer")
	m.syncSentNodes = f.counterVec("replds_sync_nodes_received_total",
		"Nodes received in answers to this server's sync rounds.", "peer")
	m.syncRecv = f.counter("replds_sync_rounds_received_total", "Digest sync rounds peers started with this server.")
	m.syncRecvBytes = f.counter("replds_sync_rounds_received_bytes_total",
		"Bytes of the sync rounds peers started with this server (their digest and this server's answer).")

	m.repairs = f.counterVec("replds_repairs_total",
		"Hash-tree repairs (equal vectors, different roots), by result (ok or error).", "result")
	m.repairNodes = f.counter("replds_repair_nodes_total", "Nodes applied by hash-tree repairs.")

	m.watchStreams = f.gauge("replds_watch_streams", "Watch streams open.")
	m.watchMessages = f.counter("replds_watch_messages_sent_total", "Watch messages sent (node batches and bookmarks).")
	m.watchNodes = f.counter("replds_watch_nodes_sent_total", "Nodes (changes) sent on Watch streams.")

	m.refusals = f.counterVec("replds_refused_total",
		"Requests, streams and connections refused or cut to protect the server, by reason: request_too_large, no_write_rule, not_peer, inflight_bytes, token_origins (a resume token replayed in full instead), watch_per_connection, watch_per_identity, watch_memory, watch_slow_reader, handshake_pending, handshake_timeout, bad_identity.",
		"reason")
	f.gaugeFunc("replds_watch_queued_bytes", "Bytes of Watch messages charged to open streams (--watch-memory bounds them).", func() float64 {
		return float64(s.watches.queued.Load())
	})
	f.gaugeFunc("replds_inflight_request_bytes", "Bytes of Store requests being handled (--max-inflight-bytes bounds them).", func() float64 {
		return float64(s.inflight.cur.Load())
	})
	m.aclDenied = f.counterVec("replds_acl_denied_total", "Requests denied by the ACLs, by operation (read, write, peer).", "op")

	m.rpcs = f.counterVec("replds_grpc_requests_total",
		"gRPC requests handled, by service, method and status code.", "service", "method", "code")
	m.rpcSeconds = f.histogramVec("replds_grpc_request_duration_seconds",
		"gRPC request latency (for streams: their lifetime), by service, method and status code.",
		prometheus.ExponentialBuckets(0.0005, 4, 10), "service", "method", "code")

	f.gaugeFunc("replds_store_nodes", "Live leaves in the store.", func() float64 {
		return float64(s.store.Stats().Nodes)
	})
	f.gaugeFunc("replds_store_bytes", "Bytes of data of the live leaves in the store.", func() float64 {
		return float64(s.store.Stats().Bytes)
	})
	f.gaugeFunc("replds_store_tombstones", "Tombstones (deleted nodes) kept in the store.", func() float64 {
		return float64(s.store.Stats().Tombstones)
	})
	m.tombs = newTombstoneMetrics(f, s)
	f.gaugeFunc("replds_ready", "1 when /readyz answers ready, else 0.", func() float64 {
		if ok, _ := s.readiness(); ok {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(
		&memberCollector{s: s},
		&lagCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	bi := buildinfo.Read()
	f.gaugeVec("replds_build_info", "Always 1; the labels describe the binary.", "version", "revision", "goversion").
		WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	return m
}

// factory creates collectors and registers them in reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// Registry returns the server's Prometheus registry (what /metrics serves),
// for tests and for embedding the server in a program of its own.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// committed observes the latency of a store commit of kind (write or
// apply) begun at start, unless it failed.
func (m *metrics) committed(kind string, start time.Time, err error) {
	if err == nil {
		m.commitSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
}

// pushSent counts a push message sent to peer.
func (m *metrics) pushSent(peer string, msg *repldspb.PushRequest) {
	m.pushSentMessages.WithLabelValues(peer).Inc()
	m.pushSentNodes.WithLabelValues(peer).Add(float64(len(msg.Nodes)))
	m.pushSentBytes.WithLabelValues(peer).Add(float64(proto.Size(msg)))
}

// pushReceived counts a push message received.
func (m *metrics) pushReceived(msg *repldspb.PushRequest) {
	m.pushRecvMessages.Inc()
	m.pushRecvNodes.Add(float64(len(msg.Nodes)))
	m.pushRecvBytes.Add(float64(proto.Size(msg)))
}

// repaired counts a finished hash-tree repair.
func (m *metrics) repaired(nodes int, err error) {
	m.repairs.WithLabelValues(result(err)).Inc()
	m.repairNodes.Add(float64(nodes))
}

// refused counts a refusal to protect the server, by reason.
func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// aclDenial counts a request the ACLs denied.
func (m *metrics) aclDenial(op string) { m.aclDenied.WithLabelValues(op).Inc() }

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// syncRound accumulates what one digest sync round this server started
// exchanged. A nil *syncRound records nothing.
type syncRound struct {
	bytes int64
	nodes int
	// changes sums upto-from of the answer's per-origin ends: what the
	// peer had that we lacked.
	changes uint64
	// oldest is the smallest version received; 0 if none.
	oldest uint64
}

func (r *syncRound) sent(req *repldspb.SyncRequest) {
	if r != nil {
		r.bytes += int64(proto.Size(req))
	}
}

func (r *syncRound) received(msg *repldspb.SyncResponse) {
	if r == nil {
		return
	}
	r.bytes += int64(proto.Size(msg))
	r.nodes += len(msg.Nodes)
	if msg.Done && msg.Upto > msg.From {
		r.changes += msg.Upto - msg.From
	}
	for _, n := range msg.Nodes {
		if r.oldest == 0 || n.Version < r.oldest {
			r.oldest = n.Version
		}
	}
}

// syncDone records a sync round with peer that ended with err.
func (m *metrics) syncDone(peer string, r *syncRound, err error) {
	m.syncSent.WithLabelValues(peer, result(err)).Inc()
	m.syncSentBytes.WithLabelValues(peer).Add(float64(r.bytes))
	m.syncSentNodes.WithLabelValues(peer).Add(float64(r.nodes))
	if err != nil {
		return
	}
	now := time.Now()
	lag := peerLag{changes: r.changes, at: now}
	if r.oldest != 0 {
		// A version's top 48 bits are wall clock milliseconds.
		age := now.Sub(lww.WallTime(r.oldest))
		lag.seconds = max(age.Seconds(), 0)
	}
	m.mu.Lock()
	m.lags[peer] = lag
	m.mu.Unlock()
}

// peerLags returns the lag behind each peer synced with, by name.
func (m *metrics) peerLags() []*repldspb.PeerLag {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*repldspb.PeerLag, 0, len(m.lags))
	for _, name := range slices.Sorted(maps.Keys(m.lags)) {
		l := m.lags[name]
		out = append(out, &repldspb.PeerLag{
			Name: name, Changes: l.changes, Seconds: l.seconds, LastSyncUnixMs: l.at.UnixMilli(),
		})
	}
	return out
}

// syncServed counts a sync round a peer started and returns stream with
// its answer counted too.
func (m *metrics) syncServed(req *repldspb.SyncRequest, stream repldspb.Internal_SyncServer) repldspb.Internal_SyncServer {
	m.syncRecv.Inc()
	m.syncRecvBytes.Add(float64(proto.Size(req)))
	return &syncCounter{Internal_SyncServer: stream, m: m}
}

type syncCounter struct {
	repldspb.Internal_SyncServer
	m *metrics
}

func (c *syncCounter) Send(msg *repldspb.SyncResponse) error {
	c.m.syncRecvBytes.Add(float64(proto.Size(msg)))
	return c.Internal_SyncServer.Send(msg)
}

// watchOpened counts an open Watch stream and returns stream with its
// messages counted; the caller calls watchClosed when the stream ends.
func (m *metrics) watchOpened(stream repldspb.Replds_WatchServer) repldspb.Replds_WatchServer {
	m.watchStreams.Inc()
	return &watchCounter{Replds_WatchServer: stream, m: m}
}

func (m *metrics) watchClosed() { m.watchStreams.Dec() }

type watchCounter struct {
	repldspb.Replds_WatchServer
	m *metrics
}

func (c *watchCounter) Send(msg *repldspb.WatchResponse) error {
	err := c.Replds_WatchServer.Send(msg)
	if err == nil {
		c.m.watchMessages.Inc()
		c.m.watchNodes.Add(float64(len(msg.Nodes)))
	}
	return err
}

// unaryInterceptor counts and times unary RPCs.
func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.rpcDone(info.FullMethod, start, err)
	return resp, err
}

// streamInterceptor counts and times streaming RPCs (their lifetime).
func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.rpcDone(info.FullMethod, start, err)
	return err
}

func (m *metrics) rpcDone(fullMethod string, start time.Time, err error) {
	// fullMethod is "/replds.v1.Replds/Store": service "Replds", method "Store".
	service := path.Ext(path.Dir(fullMethod))
	if service != "" {
		service = service[1:]
	}
	method := path.Base(fullMethod)
	code := status.Code(err).String()
	m.rpcs.WithLabelValues(service, method, code).Inc()
	m.rpcSeconds.WithLabelValues(service, method, code).Observe(time.Since(start).Seconds())
}

// memberCollector exports replds_members{state}: the members this server
// knows of, read from the membership at scrape time.
type memberCollector struct{ s *Server }

var membersDesc = prometheus.NewDesc("replds_members",
	"Cluster members as this server sees them (itself included), by state: alive (memberlist's alive or suspect), dead (failed, not back yet) or left (on purpose).",
	[]string{"state"}, nil)

func (c *memberCollector) Describe(ch chan<- *prometheus.Desc) { ch <- membersDesc }

func (c *memberCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{"alive": 0, "dead": 0, "left": 0}
	for _, mb := range c.s.mem.Members() {
		counts[mb.State.String()]++
	}
	for _, state := range slices.Sorted(maps.Keys(counts)) {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(counts[state]), state)
	}
}

// lagCollector exports the per-peer replication lag of the last successful
// sync round with each peer.
type lagCollector struct{ m *metrics }

var (
	lagChangesDesc = prometheus.NewDesc("replds_replication_lag_changes",
		"Writes the peer had that this server lacked, at the start of the last successful sync round with it (sum over origins of max(0, peer - ours)), leaving out origins whose writes a live push stream into this server was bringing.",
		[]string{"peer"}, nil)
	lagSecondsDesc = prometheus.NewDesc("replds_replication_lag_seconds",
		"Age of the oldest node the last successful sync round with the peer brought (now minus its version's wall clock); 0 when it brought none.",
		[]string{"peer"}, nil)
	lastSyncDesc = prometheus.NewDesc("replds_sync_last_success_timestamp_seconds",
		"When the last successful sync round with the peer ended (Unix seconds).",
		[]string{"peer"}, nil)
)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagChangesDesc
	ch <- lagSecondsDesc
	ch <- lastSyncDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.m.peerLags() {
		ch <- prometheus.MustNewConstMetric(lagChangesDesc, prometheus.GaugeValue, float64(l.Changes), l.Name)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, l.Seconds, l.Name)
		ch <- prometheus.MustNewConstMetric(lastSyncDesc, prometheus.GaugeValue, float64(l.LastSyncUnixMs)/1000, l.Name)
	}
}
