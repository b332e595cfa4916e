package main

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestResults_Write writes results from a fake run and checks the files:
// well-formed SVG, JSON and Markdown.
func TestResults_Write(t *testing.T) {
	o, err := parseOptions([]string{"--quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := newResults(o)
	r.add(&metric{ID: "store", Row: "store", Order: 10, Nodes: 10000, Name: "store", Value: 1.5, Unit: "s", Target: 5, TargetFor: 100000})
	r.add(&metric{ID: "idle/1000", Row: "idle", Order: 30, Nodes: 1000, Name: "idle", Value: 131, Unit: "B", Target: 1024})
	r.setEtcd("store", 7, "s", "")
	r.Idle = []idleResult{{Nodes: 1000, BytesPerRound: 131}, {Nodes: 10000, BytesPerRound: 133}}
	r.Latency.Replds = &latencyDist{MS: []float64{1.5, 2, 3, 4, 9}}
	r.Latency.Etcd = &latencyDist{MS: []float64{0.9, 1, 2}}
	r.Took = time.Second.String()
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "bench.svg"))
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("bench.svg is not well-formed XML: %v", err)
		}
	}
	if m := r.Metrics[0]; m.Pass != nil {
		t.Errorf("a 10k store row was judged against the 100k target")
	}
	if m := r.Metrics[1]; m.Pass == nil || !*m.Pass {
		t.Errorf("idle row: pass = %v, want true", m.Pass)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	if !strings.Contains(string(md), "| store | 1.50 s | < 5 s | 7.00 s |") {
		t.Errorf("results.md = %s", md)
	}
}

func TestParseStatus(t *testing.T) {
	anon, rss, err := parseStatus(strings.NewReader("Name:\treplds\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\n"))
	if err != nil || anon != 1<<20 || rss != 2<<20 {
		t.Errorf("parseStatus = %d, %d, %v; want 1 MiB, 2 MiB", anon, rss, err)
	}
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (re pl) ds) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 9 0 100 0 0\n"
	d, err := parseStat(line)
	if err != nil || d != 1680*time.Millisecond {
		t.Errorf("parseStat = %v, %v; want 1.68s", d, err)
	}
	if _, err := parseStat("4242 (replds) S 1 2"); err == nil {
		t.Error("parseStat of a short line: no error")
	}
}

// TestBytesText checks the byte counts of metric names (exact: "1 KiB")
// and of traffic summaries (rounded).
func TestBytesText(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{512, "512 B"}, {1500, "1500 B"}, {1024, "1 KiB"}, {4096, "4 KiB"}, {12345, "12 KiB"},
		{1 << 20, "1 MiB"}, {32 << 20, "32 MiB"}, {20000 << 10, "20 MiB"}, {1536 << 10, "1536 KiB"},
	} {
		if got := bytesText(c.n); got != c.want {
			t.Errorf("bytesText(%d) = %q, want %q", c.n, got, c.want)
		}
	}
	if got, want := loadVia(1024), "Store RPCs of 20k nodes, 20 MiB"; got != want {
		t.Errorf("loadVia(1024) = %q, want %q", got, want)
	}
	if got, want := loadVia(4096), "Store RPCs of 8192 nodes, 32 MiB"; got != want {
		t.Errorf("loadVia(4096) = %q, want %q", got, want)
	}
}
