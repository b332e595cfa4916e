package watcher

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/triggers"
)

// Metrics are the pull client's Prometheus metrics, in a registry of their
// own. Give it to a Watcher as Config.Metrics, add DialOption to
// Config.Follow.DialOptions (it sees the server's bookmarks), and wrap the
// triggers with Triggers. A nil *Metrics records nothing. Its methods are
// safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	lastSync       prometheus.Gauge
	applied        prometheus.Counter
	received       prometheus.Counter
	triggerRuns    *prometheus.CounterVec   // trigger
	triggerFails   *prometheus.CounterVec   // trigger
	triggerSeconds *prometheus.HistogramVec // trigger

	mu sync.Mutex
	// server is the latest bookmark received, mine the latest applied.
	server, mine map[uint64]uint64
}

// NewMetrics creates the metrics and registers them, with the Go and
// process collectors, in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), server: map[uint64]uint64{}, mine: map[uint64]uint64{}}
	m.lastSync = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "replds_pull_last_sync_timestamp_seconds",
		Help: "When the mirror last matched a server bookmark (a batch applied and its progress saved), Unix seconds.",
	})
	m.applied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "replds_pull_changes_applied_total",
		Help: "Changes (files written or removed) applied to the mirror.",
	})
	m.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "replds_pull_nodes_received_total",
		Help: "Nodes received on Watch streams.",
	})
	m.triggerRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "replds_pull_trigger_runs_total",
		Help: "Trigger runs, by trigger file name.",
	}, []string{"trigger"})
	m.triggerFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "replds_pull_trigger_failures_total",
		Help: "Trigger runs that failed (non-zero exit, timeout, or cancelled), by trigger file name.",
	}, []string{"trigger"})
	m.triggerSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "replds_pull_trigger_duration_seconds",
		Help:    "How long trigger runs took, by trigger file name.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
	}, []string{"trigger"})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "replds_pull_lag_changes",
		Help: "Writes covered by the latest bookmark the server sent that the mirror has not applied yet (sum over origins).",
	}, m.lag)
	m.reg.MustRegister(m.lastSync, m.applied, m.received, m.triggerRuns, m.triggerFails, m.triggerSeconds, lag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry to serve (promhttp.HandlerFor).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// lag is the sum over origins of max(0, server - mine).
func (m *Metrics) lag() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for o, seq := range m.server {
		if mine := m.mine[o]; seq > mine {
			n += seq - mine
		}
	}
	return float64(n)
}

// bookmarkApplied records that a batch ending with bookmark was applied
// and saved, with changes files written or removed. The watcher calls it.
func (m *Metrics) bookmarkApplied(bookmark *repldspb.Vector, changes int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	bookmark.MergeInto(m.mine)
	m.mu.Unlock()
	m.applied.Add(float64(changes))
	m.lastSync.SetToCurrentTime()
}

// DialOption returns the option that lets m see what Watch streams receive.
func (m *Metrics) DialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != repldspb.Replds_Watch_FullMethodName {
			return s, err
		}
		return &watchObserver{ClientStream: s, m: m}, nil
	})
}

// watchObserver records the nodes and bookmarks of a Watch stream.
type watchObserver struct {
	grpc.ClientStream
	m *Metrics
}

func (w *watchObserver) RecvMsg(msg any) error {
	err := w.ClientStream.RecvMsg(msg)
	if resp, ok := msg.(*repldspb.WatchResponse); ok && err == nil {
		w.m.received.Add(float64(len(resp.Nodes)))
		if resp.Reset_ {
			w.m.mu.Lock()
			clear(w.m.mine)
			w.m.mu.Unlock()
		}
		if resp.Bookmark != nil {
			w.m.mu.Lock()
			resp.Bookmark.MergeInto(w.m.server)
			w.m.mu.Unlock()
		}
	}
	return err
}

// Triggers returns t with its runs counted and timed (nil when t is nil).
func (m *Metrics) Triggers(t Triggers) Triggers {
	if t == nil {
		return nil
	}
	return &measuredTriggers{Triggers: t, m: m}
}

type measuredTriggers struct {
	Triggers
	m *Metrics
}

func (t *measuredTriggers) Run(ctx context.Context, tr triggers.Trigger, c triggers.Changes) error {
	start := time.Now()
	err := t.Triggers.Run(ctx, tr, c)
	t.m.triggerRuns.WithLabelValues(tr.Name).Inc()
	t.m.triggerSeconds.WithLabelValues(tr.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.triggerFails.WithLabelValues(tr.Name).Inc()
	}
	return err
}
