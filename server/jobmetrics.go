package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// jobCollectors are the metrics of job runs, labelled by job kind, name
// and run kind ("full", "incremental", "verify", ...). A job moves between
// servers: sum over servers by job.
type jobCollectors struct {
	runs        *prometheus.CounterVec // kind, job, run, result
	skips       *prometheus.CounterVec // kind, job
	lastSuccess *prometheus.GaugeVec   // kind, job, run
	seconds     *prometheus.GaugeVec   // kind, job, run
	nodes       *prometheus.GaugeVec   // kind, job, run
	bytes       *prometheus.GaugeVec   // kind, job, run
	verified    *prometheus.GaugeVec   // kind, job
}

// JobMetrics records the runs of the jobs of one kind in the server's
// registry. Its methods are safe for concurrent use and do not block.
type JobMetrics struct {
	kind string
	c    *jobCollectors
}

// JobMetrics returns the recorder of runs of jobs of kind.
func (s *Server) JobMetrics(kind string) *JobMetrics {
	s.jobMetricsOnce.Do(func() {
		f := factory{s.metrics.reg}
		s.jobCollectors = &jobCollectors{
			runs: f.counterVec("replds_job_runs_total",
				"Job runs this server ran, by job kind, job, run kind and result (ok or error).", "kind", "job", "run", "result"),
			skips: f.counterVec("replds_job_skips_total",
				"Job runs skipped because the previous run of the job was still in progress.", "kind", "job"),
			lastSuccess: f.gaugeVec("replds_job_last_success_timestamp_seconds",
				"Unix time at which the job's last successful run of this run kind ended on this server.", "kind", "job", "run"),
			seconds: f.gaugeVec("replds_job_last_run_seconds",
				"Duration of the job's last run of this run kind on this server.", "kind", "job", "run"),
			nodes: f.gaugeVec("replds_job_last_run_nodes",
				"Nodes the job's last run of this run kind wrote or checked.", "kind", "job", "run"),
			bytes: f.gaugeVec("replds_job_last_run_bytes",
				"Node data bytes the job's last run of this run kind wrote or checked.", "kind", "job", "run"),
			verified: f.gaugeVec("replds_backup_verified",
				"1 if the last verification of the job's newest backup passed, 0 if it failed.", "kind", "job"),
		}
	})
	return &JobMetrics{kind: kind, c: s.jobCollectors}
}

// Run records a finished run: err nil on success.
func (m *JobMetrics) Run(job, run string, took time.Duration, nodes, bytes uint64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.c.runs.WithLabelValues(m.kind, job, run, result).Inc()
	m.c.seconds.WithLabelValues(m.kind, job, run).Set(took.Seconds())
	m.c.nodes.WithLabelValues(m.kind, job, run).Set(float64(nodes))
	m.c.bytes.WithLabelValues(m.kind, job, run).Set(float64(bytes))
	if err == nil {
		m.c.lastSuccess.WithLabelValues(m.kind, job, run).Set(float64(time.Now().UnixMilli()) / 1000)
	}
	if run == "verify" {
		ok := 0.0
		if err == nil {
			ok = 1
		}
		m.c.verified.WithLabelValues(m.kind, job).Set(ok)
	}
}

// Skip records a run skipped because the job's previous run was going on.
func (m *JobMetrics) Skip(job string) {
	m.c.skips.WithLabelValues(m.kind, job).Inc()
}
