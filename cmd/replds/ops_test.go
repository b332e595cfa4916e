package main

// Operations: replds status, graceful shutdown, the signal handling of
// main, --version. End-to-end with real processes (see e2e_test.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/replds/replds/acl"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/triggers"
)

// waitStatus runs replds status --all against addr until check accepts
// its stdout and exit code, and returns the last stdout.
func waitStatus(t *testing.T, addr string, what string, check func(out string, code int) error) string {
	t.Helper()
	var out string
	err := servertest.Eventually(context.Background(), 30*time.Second, func() error {
		var code int
		out, _, code = run(t, nil, "status", "--all", "--timeout=1s", "--server="+addr)
		if err := check(out, code); err != nil {
			return fmt.Errorf("%w; output:\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return out
}

func converged(out string, code int) error {
	if code != 0 || !strings.Contains(out, "converged: yes") {
		return fmt.Errorf("exit %d, want 0 and converged: yes", code)
	}
	return nil
}

// notConvergedNaming accepts a report that the cluster has not converged,
// with a reason naming name.
func notConvergedNaming(name string) func(string, int) error {
	re := regexp.MustCompile(`(?m)^  - ` + regexp.QuoteMeta(name) + ` \(`)
	return func(out string, code int) error {
		if code == 0 || !strings.Contains(out, "converged: NO") || !re.MatchString(out) {
			return fmt.Errorf("exit %d, want non-zero and converged: NO naming %s", code, name)
		}
		return nil
	}
}

func TestE2E_StatusAll(t *testing.T) {
	servers := startCluster(t, 3)
	work := t.TempDir()
	writeFiles(t, work, map[string]string{"a": "1", "b/c": "2"})
	mustRun(t, "store", "--server="+servers[0].addr, work, "/data")
	// Readiness follows a completed sync round, which may come a moment
	// after the pushes made the servers converge: wait for both.
	out := waitStatus(t, servers[1].addr, "convergence with every server ready", func(out string, code int) error {
		if err := converged(out, code); err != nil {
			return err
		}
		for _, name := range []string{"s0", "s1", "s2"} {
			if !regexp.MustCompile(`(?m)^` + name + `\s+127\.0\.0\.1:\d+\s+alive\s+yes\s+2\s+2\s`).MatchString(out) {
				return fmt.Errorf("no alive, ready row for %s with 2 nodes", name)
			}
		}
		return nil
	})
	t.Logf("converged:\n%s", out)

	// A partitioned server (stopped: it answers nothing) is named, and a
	// write it misses keeps the others apart from it.
	servers[2].cmd.Process.Signal(syscall.SIGSTOP)
	mustRun(t, "store", "--server="+servers[0].addr, "-", "/data/while-partitioned")
	out = waitStatus(t, servers[0].addr, "s2 reported partitioned", notConvergedNaming("s2"))
	t.Logf("partitioned:\n%s", out)
	servers[2].cmd.Process.Signal(syscall.SIGCONT)
	waitStatus(t, servers[0].addr, "convergence after the partition", converged)

	// A server that is down is named too, as dead once the others noticed.
	servers[1].kill(syscall.SIGKILL)
	out = waitStatus(t, servers[0].addr, "s1 reported dead", func(out string, code int) error {
		if err := notConvergedNaming("s1")(out, code); err != nil {
			return err
		}
		if !regexp.MustCompile(`(?m)^s1\s+\S+\s+dead\s`).MatchString(out) {
			return fmt.Errorf("s1 not shown as dead")
		}
		return nil
	})
	t.Logf("down:\n%s", out)

	// The same in JSON.
	stdout, _, code := run(t, nil, "status", "--all", "--json", "--timeout=1s", "--server="+servers[2].addr)
	var rep struct {
		Servers []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Reached bool   `json:"reached"`
			Root    string `json:"root"`
		} `json:"servers"`
		Converged *bool    `json:"converged"`
		Problems  []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, stdout)
	}
	if code == 0 || rep.Converged == nil || *rep.Converged || len(rep.Servers) != 3 ||
		rep.Servers[1].Name != "s1" || rep.Servers[1].Reached || len(rep.Problems) == 0 {
		t.Errorf("status --all --json with s1 down: exit %d, %s", code, stdout)
	}

	// Without --all: one server, its members and its lag behind its peers.
	stdout = mustRun(t, "status", "--server="+servers[0].addr)
	for _, want := range []string{"server s0 at ", "ready    yes", "behind s2: ", "members (3):"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
}

// TestE2E_SIGTERMDuringWrites stops a server with SIGTERM while clients
// write to it: it exits within the grace period, and every write it
// acknowledged is there after a restart.
func TestE2E_SIGTERMDuringWrites(t *testing.T) {
	const grace = 5 * time.Second
	dataDir := t.TempDir()
	p := start(t, "solo", "server", "--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0", "--data-dir="+dataDir,
		"--name=solo", "--http-addr=127.0.0.1:0", fmt.Sprintf("--shutdown-grace=%v", grace))
	addr := p.waitLine(startedRE)[1]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := repldspb.NewRepldsClient(conn)

	var (
		mu    sync.Mutex
		acked = map[string]string{}
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				path, data := fmt.Sprintf("/w/%d/%d", w, i), fmt.Sprintf("v%d.%d", w, i)
				_, err := client.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: path, Data: []byte(data)}}})
				if err != nil {
					return // the server is going away
				}
				mu.Lock()
				acked[path] = data
				mu.Unlock()
			}
		})
	}
	err = servertest.Eventually(ctx, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 100 {
			return fmt.Errorf("%d writes acknowledged", len(acked))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("no exit %v after SIGTERM", grace+10*time.Second)
	}
	took := time.Since(sent)
	wg.Wait()
	t.Logf("exited %v after SIGTERM, with %d writes acknowledged", took, len(acked))
	if took > grace {
		t.Errorf("exit took %v, longer than the grace period %v", took, grace)
	}
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", p.err)
	}
	p.waitLine(regexp.MustCompile(`msg="server stopped"`))

	p = start(t, "solo", "server", "--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0", "--data-dir="+dataDir, "--name=solo")
	addr = p.waitLine(startedRE)[1]
	conn2, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	client = repldspb.NewRepldsClient(conn2)
	lost := 0
	for path, data := range acked {
		resp, err := client.Get(context.Background(), &repldspb.GetRequest{Path: path})
		if err != nil || string(resp.Node.GetData()) != data {
			lost++
			if lost <= 5 {
				t.Errorf("after SIGTERM and restart, Get(%s) = %v, want %q", path, err, data)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}

// TestE2E_SecondSignalForcesExit holds a graceful shutdown up with a Watch
// stream whose client reads nothing (the server blocks in Send on flow
// control): a second SIGTERM ends the process at once, with status 1.
func TestE2E_SecondSignalForcesExit(t *testing.T) {
	p := start(t, "solo", "server", "--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0", "--data-dir="+t.TempDir(),
		"--name=solo", "--shutdown-grace=1m")
	addr := p.waitLine(startedRE)[1]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := repldspb.NewRepldsClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := make([]byte, 4<<20)
	req := &repldspb.StoreRequest{}
	for i := range 6 { // 24 MiB: more than the 16 MiB a gRPC stream window can grow to
		req.Writes = append(req.Writes, &repldspb.Write{Path: fmt.Sprintf("/big/%d", i), Data: big})
	}
	if _, err := client.Store(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Watch(ctx, &repldspb.WatchRequest{Prefix: "/big"}); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLine(regexp.MustCompile(`second signal forces exit`))
	select {
	case <-p.done:
		t.Fatalf("the graceful shutdown did not wait for the Watch stream: %v", p.err)
	default:
	}
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10s after the second SIGTERM")
	}
	t.Logf("exited %v after the second SIGTERM: %v", time.Since(sent), p.err)
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d after a second signal, want 1", code)
	}
}

func TestNotifyShutdown(t *testing.T) {
	exited := make(chan int, 1)
	ctx, stop := notifyShutdown(context.Background(), func(code int) { exited <- code }, syscall.SIGUSR1)
	defer stop()
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled by the first signal")
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after one signal", code)
	default:
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit(%d) after a second signal, want exit(1)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after a second signal")
	}
}

func TestE2E_Version(t *testing.T) {
	out := mustRun(t, "--version")
	if !regexp.MustCompile(`^replds \S+(, revision [0-9a-f]+(\+modified)?)?, go1\.\d+`).MatchString(out) {
		t.Errorf("replds --version = %q", out)
	}
	if cmd := mustRun(t, "version"); cmd != out {
		t.Errorf("replds version = %q, want what --version says, %q", cmd, out)
	}
}

// scrapeMetrics fetches a /metrics page, parses it with the Prometheus text
// parser, and returns its counters and gauges by name{label=value,...}
// (labels sorted).
func scrapeMetrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}

// TestE2E_PullMetrics checks the pull client's own metrics: last sync, lag,
// nodes, and trigger runs and failures.
func TestE2E_PullMetrics(t *testing.T) {
	s := startServer(t, "solo", "127.0.0.1:0", t.TempDir())
	work := t.TempDir()
	trig := filepath.Join(work, "triggers")
	writeFiles(t, trig, map[string]string{
		"ok":   `{"path": "/data", "command": "true"}`,
		"fail": `{"path": "/data", "command": "exit 3"}`,
	})
	mustRun(t, "store", "--server="+s.addr, "-", "/data/x")
	mirror := filepath.Join(work, "mirror")
	p := start(t, "pull", "pull", "--store="+mirror, "--server="+s.addr, "--triggers-dir="+trig,
		"--http-addr=127.0.0.1:0", "/data")
	url := "http://" + p.waitLine(regexp.MustCompile(`msg="http serving" addr=(\S+)`))[1] + "/metrics"
	waitFile(t, filepath.Join(mirror, "x"), []byte{})
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		m, err := scrapeMetrics(url)
		if err != nil {
			return err
		}
		if last := m["replds_pull_last_sync_timestamp_seconds"]; time.Since(time.Unix(int64(last), 0)) > time.Minute {
			return fmt.Errorf("replds_pull_last_sync_timestamp_seconds = %v, want about now", last)
		}
		for key, min := range map[string]float64{
			"replds_pull_changes_applied_total":                        1,
			"replds_pull_nodes_received_total":                         1,
			"replds_pull_trigger_runs_total{trigger=ok}":               1,
			"replds_pull_trigger_runs_total{trigger=fail}":             1,
			"replds_pull_trigger_failures_total{trigger=fail}":         1,
			"replds_pull_trigger_duration_seconds{trigger=ok}_count":   1,
			"replds_pull_trigger_duration_seconds{trigger=fail}_count": 1,
		} {
			if m[key] < min {
				return fmt.Errorf("%s = %v, want >= %v", key, m[key], min)
			}
		}
		if got := m["replds_pull_trigger_failures_total{trigger=ok}"]; got != 0 {
			return fmt.Errorf("a trigger that succeeds counted %v failures", got)
		}
		if got, ok := m["replds_pull_lag_changes"]; !ok || got != 0 {
			return fmt.Errorf("replds_pull_lag_changes = %v (exported: %v) once synced, want 0", got, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.kill(syscall.SIGTERM)
}

// TestExamples_Parse keeps examples/ in step with the code: the ACL file
// and the triggers parse, the dashboard is JSON that queries only metrics
// that exist.
func TestExamples_Parse(t *testing.T) {
	a, err := acl.Load("../../examples/acls")
	if err != nil {
		t.Fatalf("examples/acls: %v", err)
	}
	if !a.Check("web1", acl.Read, "/hosts/web1/tls.key") || a.Check("web1", acl.Read, "/hosts/web10/tls.key") {
		t.Errorf("examples/acls: web1 rules are not as documented")
	}
	trigs, err := triggers.Load("../../examples/triggers")
	if err != nil || len(trigs) == 0 {
		t.Fatalf("examples/triggers: %d triggers, %v", len(trigs), err)
	}
	data, err := os.ReadFile("../../examples/grafana/replds-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	// Every metric name the code defines (server, jobs and pull).
	var src []byte
	files, err := filepath.Glob("../../*/*metrics*.go")
	if err != nil || len(files) < 2 {
		t.Fatalf("metrics sources: %v, %v", files, err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	name := regexp.MustCompile(`replds_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, m := range name.FindAllString(target.Expr, -1) {
				base := strings.TrimSuffix(m, "_bucket")
				if !strings.Contains(string(src), `"`+base+`"`) {
					t.Errorf("dashboard panel %q queries %s, which no code exports", p.Title, m)
				}
			}
		}
	}
}

// TestDocs_UpToDate: docs/cli is what `make docs` generates from the
// command tree.
func TestDocs_UpToDate(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "docs", "--markdown="+dir)
	want, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	have, _ := filepath.Glob("../../docs/cli/*.md")
	if len(have) != len(want) {
		t.Errorf("docs/cli has %d pages, the commands make %d: run make docs", len(have), len(want))
	}
	for _, p := range want {
		gen, _ := os.ReadFile(p)
		committed, err := os.ReadFile(filepath.Join("../../docs/cli", filepath.Base(p)))
		if err != nil || !bytes.Equal(gen, committed) {
			t.Errorf("docs/cli/%s is stale (%v): run make docs", filepath.Base(p), err)
		}
	}
}

// TestExamples_Settings: the example server config and pull environment
// files name only settings that exist.
func TestExamples_Settings(t *testing.T) {
	server := newServerCmd()
	if err := applyConfigFile(server.Flags(), "../../examples/replds/server.conf"); err != nil {
		t.Errorf("examples/replds/server.conf: %v", err)
	}
	pull := newPullCmd()
	known := map[string]bool{"REPLDS_HTTP_ADDR": true} // read by replds-pull@.service itself
	pull.Flags().VisitAll(func(f *pflag.Flag) {
		if env := f.Annotations[envAnnotation]; len(env) > 0 {
			known[env[0]] = true
		}
	})
	for _, file := range []string{"pull.env", "pull-certs.env"} {
		data, err := os.ReadFile("../../examples/replds/" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			name, _, ok := strings.Cut(line, "=")
			if ok && !strings.HasPrefix(line, "#") && !known[name] {
				t.Errorf("examples/replds/%s sets %s, which replds pull does not read", file, name)
			}
		}
	}
}

// TestExamples_Container: the Dockerfile and compose.yaml set only
// variables that replds server reads, and the image's command is one.
func TestExamples_Container(t *testing.T) {
	server := newServerCmd()
	for _, file := range []string{"../../Dockerfile", "../../compose.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		names := regexp.MustCompile(`\b(REPLDS_[A-Z_]+)(?::|=)`).FindAllStringSubmatch(string(data), -1)
		if len(names) == 0 {
			t.Errorf("%s sets no REPLDS_ variable", file)
		}
		for _, m := range names {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(m[1], "REPLDS_"), "_", "-"))
			if f := server.Flags().Lookup(name); f == nil || len(f.Annotations[envAnnotation]) == 0 {
				t.Errorf("%s sets %s, which replds server does not read", file, m[1])
			}
		}
	}
}
