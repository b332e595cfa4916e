package replicate

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus collectors of replication jobs, labelled
// by job. A job moves between servers: sum the counters over servers by
// job; the gauges are set only on the job's runner. Its methods are safe
// for concurrent use and do not block.
type Metrics struct {
	lagChanges *prometheus.GaugeVec
	lagSeconds *prometheus.GaugeVec
	received   *prometheus.CounterVec
	appliedN   *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	reconnects *prometheus.CounterVec
	errs       *prometheus.CounterVec
	stateG     *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		lagChanges: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replds_replicate_lag_changes",
			Help: "Writes of the source cluster that the replication job's resume token does not cover yet."}, []string{"job"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replds_replicate_lag_seconds",
			Help: "How long the replication job has been behind its source (0 when caught up)."}, []string{"job"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replds_replicate_received_nodes_total",
			Help: "Nodes a replication job received from its source and applied (changed or not)."}, []string{"job"}),
		appliedN: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replds_replicate_applied_nodes_total",
			Help: "Nodes a replication job applied that changed this server's store."}, []string{"job"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replds_replicate_received_bytes_total",
			Help: "Data bytes of the nodes a replication job received and applied."}, []string{"job"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replds_replicate_reconnects_total",
			Help: "Watch sessions a replication job opened on its source after its first."}, []string{"job"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replds_replicate_errors_total",
			Help: "Failed runs of a replication job (the source refused it, a TLS file is missing, ...)."}, []string{"job"}),
		stateG: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replds_replicate_state",
			Help: "1 for the state the replication job is in on its runner."}, []string{"job", "state"}),
	}
	for _, c := range []prometheus.Collector{m.lagChanges, m.lagSeconds, m.received, m.appliedN, m.bytes, m.reconnects, m.errs, m.stateG} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) lag(job string, changes uint64, secs float64) {
	m.lagChanges.WithLabelValues(job).Set(float64(changes))
	m.lagSeconds.WithLabelValues(job).Set(secs)
}

func (m *Metrics) applied(job string, received, changed int, bytes uint64) {
	m.received.WithLabelValues(job).Add(float64(received))
	m.appliedN.WithLabelValues(job).Add(float64(changed))
	m.bytes.WithLabelValues(job).Add(float64(bytes))
}

func (m *Metrics) reconnect(job string) { m.reconnects.WithLabelValues(job).Inc() }

func (m *Metrics) errors(job string) { m.errs.WithLabelValues(job).Inc() }

var states = []string{StateStarting, StateInitialCopy, StateFollowing, StateStopping, StateStopped, StatePaused, StateFailed}

func (m *Metrics) state(job, state string) {
	for _, s := range states {
		v := 0.0
		if s == state {
			v = 1
		}
		m.stateG.WithLabelValues(job, s).Set(v)
	}
}
