package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// metric is one line of the result table.
type metric struct {
	ID    string `json:"id"`
	Row   string `json:"row"`
	Order int    `json:"order"`
	Name  string `json:"name"`
	// Nodes is the store size the metric was measured at, if any.
	Nodes int     `json:"nodes,omitempty"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Target is the upper bound of issue 5 (0: none); it applies only at
	// TargetFor nodes when that is set (a scaled-down run has no verdict).
	Target    float64 `json:"target,omitempty"`
	TargetFor int     `json:"target_for_nodes,omitempty"`
	Pass      *bool   `json:"pass,omitempty"`
	Note      string  `json:"note,omitempty"`
	// Etcd is the same measure on etcd, when compared.
	Etcd     *float64 `json:"etcd,omitempty"`
	EtcdNote string   `json:"etcd_note,omitempty"`
}

type latencyDist struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	AckP50  float64 `json:"ack_p50_ms"`
	AckP99  float64 `json:"ack_p99_ms"`
	// MS holds every sample, sorted, in milliseconds.
	MS []float64 `json:"samples_ms"`
}

type idleResult struct {
	Nodes         int                    `json:"nodes"`
	Seconds       float64                `json:"seconds"`
	Bytes         int64                  `json:"bytes"`
	SyncRounds    int64                  `json:"sync_rounds"`
	BytesPerRound float64                `json:"bytes_per_round"`
	ByMethod      map[string]methodStats `json:"by_method"`
}

type loadResult struct {
	Nodes          int     `json:"nodes"`
	Via            string  `json:"via,omitempty"`
	Acked          float64 `json:"acknowledged_s"`
	Converged      float64 `json:"converged_s"`
	PeakRssAnonMiB float64 `json:"peak_rss_anon_mib"`
	// Traffic is what crossed the proxies meanwhile, by RPC method.
	Traffic map[string]methodStats `json:"traffic,omitempty"`
}

type watchResult struct {
	Streams          int     `json:"streams"`
	OpenSeconds      float64 `json:"open_s"`
	RssAnonBeforeMiB float64 `json:"rss_anon_before_mib"`
	RssAnonAfterMiB  float64 `json:"rss_anon_after_mib"`
	KiBPerStream     float64 `json:"kib_per_stream"`
	P50              float64 `json:"p50_ms"`
	P99              float64 `json:"p99_ms"`
	Max              float64 `json:"max_ms"`
}

// results is everything a run measured; it is written as results.json.
type results struct {
	Date    string            `json:"date"`
	Took    string            `json:"took"`
	Machine map[string]string `json:"machine"`
	Options map[string]any    `json:"options"`
	Metrics []*metric         `json:"metrics"`
	Latency struct {
		Replds *latencyDist `json:"replds,omitempty"`
		Etcd   *latencyDist `json:"etcd,omitempty"`
	} `json:"latency"`
	Idle  []idleResult   `json:"idle"`
	Loads []loadResult   `json:"loads"`
	Watch *watchResult   `json:"watch,omitempty"`
	Etcd  map[string]any `json:"etcd,omitempty"`
}

func newResults(o *options) *results {
	rows := make([]string, 0, len(o.rows))
	for _, r := range allRows {
		if o.rows[r] {
			rows = append(rows, r)
		}
	}
	return &results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Options: map[string]any{
			"quick": o.quick, "rows": rows, "nodes": o.nodes, "scales": o.scales, "size": o.size,
			"streams": o.streams, "seams_nodes": o.seamsNodes, "s3_nodes": o.s3Nodes, "samples": o.samples, "idle": o.idle.String(), "settle": o.settle.String(),
			"sync_interval": o.syncInterval.String(), "compare_etcd": o.compareEtcd, "server_env": o.serverEnv,
		},
	}
}

// add records m, judging it against its target.
func (r *results) add(m *metric) {
	if m.Target > 0 && (m.TargetFor == 0 || m.TargetFor == m.Nodes) {
		pass := m.Value < m.Target
		m.Pass = &pass
	}
	r.Metrics = append(r.Metrics, m)
}

// setEtcd attaches etcd's figure v, in unit, to the metric id. Without
// such a metric (replds did not measure it), it adds an etcd-only one.
func (r *results) setEtcd(id string, v float64, unit, note string) {
	for _, m := range r.Metrics {
		if m.ID == id {
			m.Etcd, m.EtcdNote = &v, note
			return
		}
	}
	// replds did not measure it in this run: keep etcd's figure anyway.
	r.Metrics = append(r.Metrics, &metric{ID: id, Row: "etcd", Order: 1000, Name: id + " (etcd only)", Unit: unit, Etcd: &v, EtcdNote: note})
}

func (r *results) sorted() []*metric {
	out := slices.Clone(r.Metrics)
	// Rows in the order (Order/10), each by store size, then its
	// lines.
	slices.SortStableFunc(out, func(a, b *metric) int {
		if a.Order/10 != b.Order/10 {
			return a.Order/10 - b.Order/10
		}
		if a.Nodes != b.Nodes {
			return a.Nodes - b.Nodes
		}
		return a.Order - b.Order
	})
	return out
}

// print writes the table: one line per metric, with etcd's figure and the
// ratio when compared.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nreplds benchmark, %s (%s CPUs, %s, %s, Linux %s), took %s\n\n",
		r.Date, r.Machine["cpus"], r.Machine["memory"], r.Machine["go"], r.Machine["kernel"], r.Took)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	etcd := false
	for _, m := range r.Metrics {
		etcd = etcd || m.Etcd != nil
	}
	head := "what\treplds\ttarget\t"
	if etcd {
		head += "etcd 3.4\tetcd/replds\t"
	}
	fmt.Fprintln(tw, head+"note")
	for _, m := range r.sorted() {
		target, verdict := "", ""
		if m.Target > 0 {
			target = "< " + formatTarget(m.Target, m.Unit)
			switch {
			case m.Pass == nil:
				verdict = " (n/a)"
			case *m.Pass:
				verdict = " ok"
			default:
				verdict = " MISS"
			}
		}
		value := ""
		if m.Row != "etcd" {
			value = format(m.Value, m.Unit)
		}
		line := fmt.Sprintf("%s\t%s\t%s%s\t", m.Name, value, target, verdict)
		if etcd {
			if m.Etcd != nil {
				ratio := ""
				if m.Value > 0 {
					ratio = fmt.Sprintf("%.1fx", *m.Etcd/m.Value)
				}
				line += fmt.Sprintf("%s\t%s\t", format(*m.Etcd, m.Unit), ratio)
			} else {
				line += "\t\t"
			}
		}
		note := m.Note
		if m.EtcdNote != "" {
			note = strings.TrimPrefix(note+"; etcd: "+m.EtcdNote, "; ")
		}
		fmt.Fprintln(tw, line+note)
	}
	tw.Flush()
}

// markdown returns the table as Markdown, for the README.
func (r *results) markdown() string {
	var sb strings.Builder
	etcd := false
	for _, m := range r.Metrics {
		etcd = etcd || m.Etcd != nil
	}
	sb.WriteString("| what | replds | target |")
	if etcd {
		sb.WriteString(" etcd 3.4 |")
	}
	sb.WriteString("\n|---|---|---|")
	if etcd {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	for _, m := range r.sorted() {
		if m.Row == "etcd" {
			continue
		}
		target := ""
		if m.Target > 0 {
			target = "< " + formatTarget(m.Target, m.Unit)
			if m.Pass != nil && !*m.Pass {
				target += " (missed)"
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %s |", m.Name, format(m.Value, m.Unit), target)
		if etcd {
			e := ""
			if m.Etcd != nil {
				e = format(*m.Etcd, m.Unit)
			}
			fmt.Fprintf(&sb, " %s |", e)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func format(v float64, unit string) string {
	switch unit {
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "ms":
		if v < 10 {
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	case "x":
		return fmt.Sprintf("%.2fx", v)
	default:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
}

// formatTarget writes a target as the issue does: 5 s, 1 KiB, 1.5x.
func formatTarget(v float64, unit string) string {
	if unit == "B" && v == 1024 {
		return "1 KiB"
	}
	if unit == "x" {
		return fmt.Sprintf("%gx", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

// write saves results.json, results.md and bench.svg in dir.
func (r *results) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench.svg"), r.svg(), 0o644)
}

// count writes n as 10k, 100k, 1M.
func count(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// bytesText writes a byte count: exactly in the largest unit that divides
// it (512 B, 1 KiB, 32 MiB), else rounded in MiB from 10 MiB and in KiB
// from 10 KiB (210 MiB, 20 KiB), else in bytes (1500 B).
func bytesText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MiB", mib(n))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 10<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
