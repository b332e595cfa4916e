package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Row names, as given to --rows.
var allRows = []string{"store", "latency", "idle", "memory", "disk", "pull", "pull-busy", "join", "watch", "resume", "restore", "backup", "restore-backup", "backup-s3"}

// options are the command line settings.
type options struct {
	quick          bool
	rows           map[string]bool
	nodes          int
	storeRuns      int
	scales         []int
	size           int
	streams        int
	seamsNodes     int
	s3Nodes        int
	samples        int
	idle           time.Duration
	settle         time.Duration
	syncInterval   time.Duration
	out            string
	work           string
	keep           bool
	compareEtcd    bool
	serverLogLevel string
	bin            string
	profile        bool
	serverEnv      []string
	replot         string
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var rows, scales string
	fs.BoolVar(&o.quick, "quick", false, "small run: 10k nodes, idle rounds at 1k and 10k, 1000 Watch streams, 100 latency samples")
	fs.StringVar(&rows, "rows", strings.Join(allRows, ","), "rows to measure, comma-separated: "+strings.Join(allRows, ","))
	fs.IntVar(&o.nodes, "nodes", 0, "nodes of the store, pull, memory and disk rows (default 100000; --quick 10000)")
	fs.StringVar(&scales, "scales", "", "store sizes of the idle-round and memory rows; the largest also serves the join row (default 10000,100000,1000000; --quick 1000,10000)")
	fs.IntVar(&o.storeRuns, "store-runs", 0, "uploads of the store row, each into an empty cluster; the row reports the median (default 3; --quick 1)")
	fs.IntVar(&o.size, "size", 1024, "bytes of data per node")
	fs.IntVar(&o.seamsNodes, "seams-nodes", 0, "nodes of the resume, restore, backup and restore-backup rows (default 1000000; --quick 10000)")
	fs.IntVar(&o.s3Nodes, "s3-nodes", 0, "nodes of the backup-s3 row (default 100000; --quick 10000)")
	fs.IntVar(&o.streams, "streams", 0, "concurrent Watch streams (default 10000; --quick 1000)")
	fs.IntVar(&o.samples, "samples", 0, "write-to-pull latency samples (default 500; --quick 100)")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "idle window of the idle-round rows")
	fs.DurationVar(&o.settle, "settle", -1, "idle time after a load before the steady memory figure; 0 skips it (default 150s, past the runtime's forced collection every 2 minutes; --quick 0)")
	fs.DurationVar(&o.syncInterval, "sync-interval", time.Second, "servers' --sync-interval")
	fs.StringVar(&o.out, "out", "bench-results", "directory for results.json, bench.svg and profiles")
	fs.StringVar(&o.work, "work", "", "work directory for data and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (data dirs and server logs)")
	fs.BoolVar(&o.compareEtcd, "compare-etcd", false, "also run the workload against a 3-member etcd cluster (installs Debian's etcd-server and etcd-client when missing)")
	fs.StringVar(&o.serverLogLevel, "server-log-level", "info", "servers' --log-level")
	fs.Func("server-env", "KEY=VALUE added to the servers' environment, e.g. GOMEMLIMIT=400MiB (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
	fs.StringVar(&o.replot, "replot", "", "measure nothing: read this results.json, print its table and write results.md and bench.svg to --out")
	fs.BoolVar(&o.profile, "profile", false, "build replds with a pprof hook (build overlay) and save CPU profiles of each phase and heap profiles to --out/profiles")
	fs.StringVar(&o.bin, "bin", "", "replds binary to measure (default: build ./cmd/replds of this module)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.rows = map[string]bool{}
	for _, r := range strings.Split(rows, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(allRows, r) {
			return nil, fmt.Errorf("--rows: unknown row %q (want %s)", r, strings.Join(allRows, ","))
		}
		o.rows[r] = true
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	if o.settle < 0 {
		o.settle = 150 * time.Second
		if o.quick {
			o.settle = 0
		}
	}
	def(&o.nodes, 100000, 10000)
	def(&o.storeRuns, 3, 1)
	def(&o.streams, 10000, 1000)
	def(&o.seamsNodes, 1000000, 10000)
	def(&o.s3Nodes, 100000, 10000)
	def(&o.samples, 500, 100)
	if scales == "" {
		scales = "10000,100000,1000000"
		if o.quick {
			scales = "1000,10000"
		}
	}
	for _, s := range strings.Split(scales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--scales: bad size %q", s)
		}
		o.scales = append(o.scales, n)
	}
	slices.Sort(o.scales)
	o.scales = slices.Compact(o.scales)
	if o.nodes <= 0 || o.seamsNodes <= 0 || o.s3Nodes <= 0 || o.size <= 0 || o.streams <= 0 || o.samples <= 0 || o.idle <= 0 {
		return nil, errors.New("sizes and counts must be positive")
	}
	return o, nil
}

// bench is the state of one run.
type bench struct {
	opts   *options
	bin    string // replds binary
	work   string
	procs  *procs
	log    io.Writer
	res    *results
	etcd   *etcdBench // nil without --compare-etcd
	svgOut string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.replot != "" {
		return replot(o.replot, o.out, stdout)
	}
	b := &bench{opts: o, procs: &procs{}, log: stderr, res: newResults(o)}
	b.work = o.work
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "replds-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(b.work)
	} else {
		defer b.logf("work directory kept: %s", b.work)
	}
	// Deferred after the removal of the work directory so that it runs
	// before: the processes write there until they die. No process is
	// started before this point.
	defer b.procs.killAll()
	if err := b.build(ctx); err != nil {
		return err
	}
	start := time.Now()
	phases := []func(context.Context) error{b.mainPhase, b.scalePhases, b.seamsPhase, b.backupS3Phase}
	if o.compareEtcd {
		phases = append(phases, b.etcdPhase)
	}
	var errs []error
	for _, ph := range phases {
		if ctx.Err() != nil {
			break
		}
		if err := ph(ctx); err != nil {
			// Report what was measured so far, with the failure.
			b.logf("phase failed: %v", err)
			errs = append(errs, err)
		}
	}
	b.res.Took = time.Since(start).Round(time.Second).String()
	b.res.print(stdout)
	if err := b.res.write(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults: %s, %s\n", filepath.Join(o.out, "results.json"), filepath.Join(o.out, "bench.svg"))
	return errors.Join(errs...)
}

// replot redraws the outputs of an earlier run.
func replot(file, out string, stdout io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	r.print(stdout)
	return r.write(out)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// build compiles replds into the work directory, unless --bin names one.
func (b *bench) build(ctx context.Context) error {
	if b.opts.bin != "" {
		bin, err := filepath.Abs(b.opts.bin)
		if err != nil {
			return err
		}
		b.bin = bin
		return nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	b.bin = filepath.Join(b.work, "replds")
	args := []string{"build", "-o", b.bin}
	if b.opts.profile {
		ov, err := b.buildOverlay(root)
		if err != nil {
			return err
		}
		args = append(args, ov)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/replds")...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = b.log, b.log
	b.logf("building replds")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build replds: %w", err)
	}
	return nil
}

// moduleRoot returns the directory of the replds go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench from inside the replds module")
	}
	return filepath.Dir(mod), nil
}

// machine describes where the bench ran.
func machine() map[string]string {
	m := map[string]string{
		"cpus":   strconv.Itoa(runtime.NumCPU()),
		"go":     runtime.Version(),
		"goos":   runtime.GOOS + "/" + runtime.GOARCH,
		"kernel": "",
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
