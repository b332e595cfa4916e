package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/backup/backupjob"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
)

// Names and sizes of the backup rows.
const (
	// backupJob is the backup job the rows define.
	backupJob = "bench"
	// subPrefix holds the subtree the rollback row changes and restores.
	subPrefix = "/bench/sub"
	// subShare sizes that subtree: 1 node for every subShare of the
	// data, 10k for 1M.
	subShare = 100
	// backupChanges is how many nodes change before the incremental.
	backupChanges = 1000
)

// jobRun is one run of the backup job, as its status reported it.
type jobRun struct {
	last   jobs.Run
	took   time.Duration // the run's duration, measured by its runner
	wall   time.Duration // from the command's start until the status showed the run's end
	runner *server
	// growth is the runner's peak RssAnon during the run less its RssAnon
	// before the command.
	growth int64
}

// backupRows runs the backup and restore-backup rows. On c, the seams
// cluster holding n nodes, it loads a subtree of n/subShare more, has the
// job back up / to a file:// target (a full, at once: the wall and the
// runner's time, the runner's memory growth, the target's size), changes
// backupChanges nodes and runs an incremental. Then it stops c and, for
// restore-backup, restores that backup with --merge into an empty cluster
// of three servers, rewrites the whole subtree there and rolls it back
// with restore --prefix.
func (b *bench) backupRows(ctx context.Context, c *cluster, n int) error {
	subN := max(1, n/subShare)
	s1 := c.servers[0]
	st, err := s1.client.Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return err
	}
	if err := load(ctx, s1, subPrefix, subN, b.opts.size); err != nil {
		return err
	}
	if err := c.waitConverged(ctx, st.Nodes+uint64(subN), convergeTimeout); err != nil {
		return err
	}
	dir := filepath.Join(b.work, "backups")
	url := "file://" + dir
	size := bytesText(int64(b.opts.size))
	what := fmt.Sprintf("%s + %s nodes x %s", count(n), count(subN), size)

	b.logf("backup: full backup of %s to %s", what, url)
	full, err := b.runBackupJob(ctx, c, nil, "backup", "create", backupJob, "--prefix=/", "--target="+url, "--schedule=@yearly", "--server="+s1.addr)
	if err != nil {
		return fmt.Errorf("backup row, full: %w", err)
	}
	if full.last.Kind != "full" {
		return fmt.Errorf("backup row: the first run was a %s backup, want full", full.last.Kind)
	}
	_, stored, err := diskUsage(dir)
	if err != nil {
		return err
	}
	b.logf("backup: full of %d nodes, %s, on %s: %v (wall %v), RssAnon +%.0f MiB, %s in the target",
		full.last.Nodes, bytesText(int64(full.last.Bytes)), full.runner.name, full.took, full.wall.Round(time.Millisecond), mib(full.growth), bytesText(stored))

	if err := rewrite(ctx, s1, dataPrefix, n, backupChanges, b.opts.size, 3); err != nil {
		return err
	}
	if err := converge(ctx, c); err != nil {
		return err
	}
	incr, err := b.runBackupJob(ctx, c, nil, "backup", "run", backupJob, "--server="+s1.addr)
	if err != nil {
		return fmt.Errorf("backup row, incremental: %w", err)
	}
	if incr.last.Kind != "incremental" || incr.last.Nodes < backupChanges {
		return fmt.Errorf("backup row: after %d changes, a %s backup of %d nodes, want an incremental of them", backupChanges, incr.last.Kind, incr.last.Nodes)
	}
	b.logf("backup: incremental of %d nodes on %s: %v (wall %v)", incr.last.Nodes, incr.runner.name, incr.took, incr.wall.Round(time.Millisecond))
	if b.row("backup") {
		b.res.add(&metric{ID: "backup/full", Row: "backup", Order: 100, Nodes: n,
			Name:  fmt.Sprintf("full backup of %s to file://, server-measured", what),
			Value: full.took.Seconds(), Unit: "s", Target: 20, TargetFor: 1000000,
			Note: fmt.Sprintf("the runner's duration in the job status; %d nodes, %s of node data", full.last.Nodes, bytesText(int64(full.last.Bytes)))})
		b.res.add(&metric{ID: "backup/full-wall", Row: "backup", Order: 101, Nodes: n,
			Name:  fmt.Sprintf("full backup of %s to file://, from `backup create` until the status shows it done", what),
			Value: full.wall.Seconds(), Unit: "s",
			Note: fmt.Sprintf("run by %s of 2 servers; status polled every 20 ms", full.runner.name)})
		b.res.add(&metric{ID: "backup/full-memory", Row: "backup", Order: 102, Nodes: n,
			Name:  fmt.Sprintf("full backup of %s: the runner's RssAnon growth", what),
			Value: mib(full.growth), Unit: "MiB", Target: 100, TargetFor: 1000000,
			Note: "peak during the run (sampled every 100 ms) less the figure before `backup create`"})
		b.res.add(&metric{ID: "backup/full-size", Row: "backup", Order: 103, Nodes: n,
			Name:  fmt.Sprintf("full backup of %s: size in the target", what),
			Value: mib(stored), Unit: "MiB",
			Note: fmt.Sprintf("files in the target directory (zstd), for %s of node data", bytesText(int64(full.last.Bytes)))})
		b.res.add(&metric{ID: "backup/incremental", Row: "backup", Order: 104, Nodes: n,
			Name:  fmt.Sprintf("incremental backup after %s changes in %s, server-measured", count(backupChanges), what),
			Value: incr.took.Seconds(), Unit: "s", Target: 1, TargetFor: 1000000,
			Note: fmt.Sprintf("%d nodes; from `backup run` until the status showed it done: %.2f s", incr.last.Nodes, incr.wall.Seconds())})
	}
	// The restore cluster gets the machine to itself.
	c.close()
	if !b.row("restore-backup") || ctx.Err() != nil {
		return nil
	}
	if err := b.restoreBackupRows(ctx, url, n, subN); err != nil {
		return fmt.Errorf("restore-backup row: %w", err)
	}
	return nil
}

// restoreBackupRows restores the backup at url, of n data nodes and subN
// in subPrefix, into an empty 3-server cluster with --merge, then rolls
// back subPrefix there after rewriting all of it.
func (b *bench) restoreBackupRows(ctx context.Context, url string, n, subN int) error {
	rc, err := b.newCluster(ctx, "restore-backup", 3)
	if err != nil {
		return err
	}
	defer rc.close()
	if err := rc.waitMembers(ctx, 3, time.Minute); err != nil {
		return err
	}
	b.logf("restore-backup: restore --merge of %d nodes into 3 empty servers", n+subN)
	mr, err := b.mergeRestore(ctx, rc, url, nil)
	if err != nil {
		return err
	}
	if mr.changed != uint64(n+subN) {
		return fmt.Errorf("restore --merge changed %d nodes, want %d", mr.changed, n+subN)
	}
	b.logf("restore-backup: merge of %d nodes: command %v, on all 3 servers %v, peak RssAnon %.0f MiB",
		mr.changed, mr.cmd.Round(time.Millisecond), mr.took.Round(time.Millisecond), mib(mr.peak))
	what := fmt.Sprintf("%s + %s x %s", count(n), count(subN), bytesText(int64(b.opts.size)))
	b.res.add(&metric{ID: "restore-backup/merge", Row: "restore-backup", Order: 110, Nodes: n,
		Name:  fmt.Sprintf("`restore --merge` of %s from file:// into 3 empty servers, until all hold it", what),
		Value: mr.took.Seconds(), Unit: "s", Target: 120, TargetFor: 1000000,
		Note: fmt.Sprintf("the command (chain verified, then Import into every member) exited after %.2f s; peak server RssAnon %.0f MiB", mr.cmd.Seconds(), mib(mr.peak))})

	s1 := rc.servers[0]
	if err := rewrite(ctx, s1, subPrefix, subN, subN, b.opts.size, 5); err != nil {
		return err
	}
	if err := converge(ctx, rc); err != nil {
		return err
	}
	start := time.Now()
	out, err := b.runCmd(ctx, rc, "restore-rollback", nil, "restore", "--from="+url, "--job="+backupJob, "--prefix="+subPrefix, "--server="+s1.addr)
	if err != nil {
		return err
	}
	took := time.Since(start)
	m := rollbackRE.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("restore --prefix printed no summary")
	}
	if changed, _ := strconv.Atoi(m[2]); changed != subN || m[1] != "0" || m[3] != "0" {
		return fmt.Errorf("restore --prefix: %s added, %s changed, %s deleted; want 0, %d, 0", m[1], m[2], m[3], subN)
	}
	if err := converge(ctx, rc); err != nil {
		return err
	}
	all := time.Since(start)
	b.logf("restore-backup: rollback of %d nodes: %v, on all 3 servers %v", subN, took.Round(time.Millisecond), all.Round(time.Millisecond))
	b.res.add(&metric{ID: "restore-backup/rollback", Row: "restore-backup", Order: 120, Nodes: subN,
		Name:  fmt.Sprintf("`restore --prefix` rollback of a %s-node subtree, all of it changed, in %s", count(subN), what),
		Value: took.Seconds(), Unit: "s", Target: 5, TargetFor: 10000,
		Note: fmt.Sprintf("the command (it reads and checks only the files of the subtree); on all 3 servers after %.2f s", all.Seconds())})
	return nil
}

var (
	mergeRE    = regexp.MustCompile(`restored \S+: (\d+) nodes changed`)
	rollbackRE = regexp.MustCompile(`restored \S+: (\d+) added, (\d+) changed, (\d+) deleted`)
)

// mergeResult is what mergeRestore measured.
type mergeResult struct {
	changed   uint64        // nodes the command reported changed
	cmd, took time.Duration // until the command exited; until every server held the nodes
	peak      int64         // the largest server RssAnon meanwhile
}

// mergeRestore runs `replds restore --merge` of the backup job at url to
// the first server of c, with env added to the command's environment,
// and waits until every server holds what it restored.
func (b *bench) mergeRestore(ctx context.Context, c *cluster, url string, env []string) (mergeResult, error) {
	var r mergeResult
	st, err := c.servers[0].client.Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return r, err
	}
	peaks := sampleMem(250*time.Millisecond, c.pids)
	start := time.Now()
	out, err := b.runCmd(ctx, c, "restore-merge", env, "restore", "--from="+url, "--job="+backupJob, "--merge", "--server="+c.servers[0].addr)
	r.cmd = time.Since(start)
	if err == nil {
		m := mergeRE.FindStringSubmatch(out)
		if m == nil {
			err = errors.New("restore --merge printed no summary")
		} else {
			r.changed, _ = strconv.ParseUint(m[1], 10, 64)
			err = c.waitConverged(ctx, st.Nodes+r.changed, convergeTimeout)
		}
	}
	r.took = time.Since(start)
	r.peak = maxOf(peaks.finish())
	return r, err
}

// runBackupJob runs `replds args...` (backup create or backup run of
// backupJob) with env added to its environment, and waits until the job's
// status, read from the first server of c, counts one more finished run.
// It samples the servers' memory meanwhile.
func (b *bench) runBackupJob(ctx context.Context, c *cluster, env []string, args ...string) (jobRun, error) {
	var r jobRun
	s1 := c.servers[0]
	before, err := jobStatus(ctx, s1)
	if err != nil {
		return r, err
	}
	base := map[int]int64{}
	for _, pid := range c.pids() {
		if base[pid], _, err = rssAnon(pid); err != nil {
			return r, err
		}
	}
	peaks := sampleMem(100*time.Millisecond, c.pids)
	start := time.Now()
	_, err = b.runCmd(ctx, c, strings.Join(args[:2], "-"), env, args...)
	var st jobs.Status
	if err == nil {
		err = poll(ctx, convergeTimeout, 20*time.Millisecond, func() error {
			var err error
			if st, err = jobStatus(ctx, s1); err != nil {
				return err
			}
			if st.Runs <= before.Runs || st.Last == nil {
				return fmt.Errorf("job %s: %d runs, state %s", backupJob, st.Runs, st.State)
			}
			return nil
		})
	}
	r.wall = time.Since(start)
	peak := peaks.finish()
	if err != nil {
		return r, err
	}
	r.last = *st.Last
	if r.last.Error != "" {
		return r, fmt.Errorf("%s backup on %s failed: %s", r.last.Kind, st.Runner, r.last.Error)
	}
	if r.took, err = time.ParseDuration(r.last.Duration); err != nil {
		return r, fmt.Errorf("job status: duration %q: %w", r.last.Duration, err)
	}
	for _, s := range c.servers {
		if s.name == st.Runner {
			r.runner = s
		}
	}
	if r.runner == nil {
		return r, fmt.Errorf("job status: runner %q is none of the servers", st.Runner)
	}
	pid := r.runner.p.pid()
	r.growth = peak[pid] - base[pid]
	return r, nil
}

// jobStatus reads the status node of backupJob on s: what `replds backup
// status --json` prints, without a process per read. Before the job's
// first status, it returns the zero Status.
func jobStatus(ctx context.Context, s *server) (jobs.Status, error) {
	resp, err := s.client.Get(ctx, &repldspb.GetRequest{Path: jobs.StatusPath(backupjob.Kind, backupJob)})
	if status.Code(err) == codes.NotFound {
		return jobs.Status{}, nil
	}
	if err != nil {
		return jobs.Status{}, err
	}
	return jobs.ParseStatus(resp.Node.GetData())
}

// runCmd runs `replds args...` to its end, its output in c's directory
// under name, with env added to its environment, and returns the output.
func (b *bench) runCmd(ctx context.Context, c *cluster, name string, env []string, args ...string) (string, error) {
	log := filepath.Join(c.dir, name+".log")
	p, err := b.procs.start(name, log, env, nil, b.bin, args...)
	if err != nil {
		return "", err
	}
	if err := p.wait(ctx); err != nil {
		return "", err
	}
	out, err := os.ReadFile(log)
	return string(out), err
}

// converge waits until every server of c holds what the first one does.
func converge(ctx context.Context, c *cluster) error {
	st, err := c.servers[0].client.Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return err
	}
	return c.waitConverged(ctx, st.Nodes, convergeTimeout)
}

// versityGW is the S3 server of the backup-s3 row
// (github.com/versity/versitygw).
const versityGW = "versitygw"

// backupS3Phase runs the backup-s3 row: --s3-nodes nodes on one server,
// backed up (a full) to a bucket of a versitygw S3 server on loopback,
// then restored with --merge into another, empty server. It is skipped,
// with a log line, when versitygw is on neither PATH nor $GOPATH/bin.
func (b *bench) backupS3Phase(ctx context.Context) error {
	if !b.row("backup-s3") {
		return nil
	}
	bin := findBinary(ctx, versityGW)
	if bin == "" {
		b.logf("backup-s3: %s not found on PATH or in $GOPATH/bin: row skipped (CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", versityGW)
		return nil
	}
	n := b.opts.s3Nodes
	b.logf("backup-s3 phase: %d nodes of %d bytes through %s", n, b.opts.size, bin)
	url, env, stop, err := b.startS3(ctx, bin)
	if err != nil {
		return fmt.Errorf("backup-s3: %w", err)
	}
	defer stop()
	c, err := b.newClusterEnv(ctx, "backup-s3", 1, env)
	if err != nil {
		return err
	}
	defer c.close()
	if err := load(ctx, c.servers[0], dataPrefix, n, b.opts.size); err != nil {
		return err
	}
	full, err := b.runBackupJob(ctx, c, env, "backup", "create", backupJob, "--prefix="+dataPrefix, "--target="+url, "--schedule=@yearly", "--server="+c.servers[0].addr)
	if err != nil {
		return fmt.Errorf("backup-s3, full: %w", err)
	}
	b.logf("backup-s3: full of %d nodes: %v (wall %v), RssAnon +%.0f MiB", full.last.Nodes, full.took, full.wall.Round(time.Millisecond), mib(full.growth))
	c.close()
	rc, err := b.newClusterEnv(ctx, "restore-s3", 1, env)
	if err != nil {
		return err
	}
	defer rc.close()
	mr, err := b.mergeRestore(ctx, rc, url, env)
	if err != nil {
		return fmt.Errorf("backup-s3, restore: %w", err)
	}
	if mr.changed != uint64(n) {
		return fmt.Errorf("backup-s3: restore --merge changed %d nodes, want %d", mr.changed, n)
	}
	b.logf("backup-s3: restore --merge of %d nodes: %v, peak RssAnon %.0f MiB", mr.changed, mr.took.Round(time.Millisecond), mib(mr.peak))
	what := fmt.Sprintf("%s x %s", count(n), bytesText(int64(b.opts.size)))
	b.res.add(&metric{ID: "backup-s3/full", Row: "backup-s3", Order: 130, Nodes: n,
		Name:  fmt.Sprintf("full backup of %s to S3 (versitygw on loopback), server-measured", what),
		Value: full.took.Seconds(), Unit: "s",
		Note: fmt.Sprintf("1 server; from `backup create` until the status showed it done: %.2f s; runner RssAnon +%.0f MiB", full.wall.Seconds(), mib(full.growth))})
	b.res.add(&metric{ID: "backup-s3/restore", Row: "backup-s3", Order: 131, Nodes: n,
		Name:  fmt.Sprintf("`restore --merge` of %s from S3 (versitygw) into an empty server", what),
		Value: mr.took.Seconds(), Unit: "s",
		Note: fmt.Sprintf("chain verified, then Import; peak server RssAnon %.0f MiB", mib(mr.peak))})
	return nil
}

// startS3 starts versitygw (bin) on loopback with a directory and root
// credentials of its own, creates a bucket, and returns an s3:// URL of a
// prefix in it, the environment replds processes need to reach it, and a
// function that stops it.
func (b *bench) startS3(ctx context.Context, bin string) (url string, env []string, stop func(), err error) {
	const access, secret = "replds-bench", "replds-bench-secret-key"
	dir := filepath.Join(b.work, "s3")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	p, err := b.procs.start(versityGW, filepath.Join(b.work, versityGW+".log"),
		[]string{"ROOT_ACCESS_KEY=" + access, "ROOT_SECRET_KEY=" + secret}, nil, bin, "--port", addr, "posix", dir)
	if err != nil {
		return "", nil, nil, err
	}
	stop = func() { p.stop(5 * time.Second) }
	err = poll(ctx, 15*time.Second, 20*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err != nil {
		stop()
		return "", nil, nil, fmt.Errorf("%s does not listen on %s: %w; see %s", versityGW, addr, err, p.log)
	}
	none := filepath.Join(dir, "no-aws-config")
	env = []string{"AWS_ACCESS_KEY_ID=" + access, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none}
	url = fmt.Sprintf("s3://replds-bench/backups?endpoint=http://%s&region=us-east-1", addr)
	if err := createBucket(ctx, url, env); err != nil {
		stop()
		return "", nil, nil, err
	}
	return url, env, stop, nil
}

// createBucket creates the bucket of the s3:// url, with the credentials
// of env set in this process's environment for the while.
func createBucket(ctx context.Context, url string, env []string) error {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		if had {
			defer os.Setenv(k, old)
		} else {
			defer os.Unsetenv(k)
		}
	}
	tgt, err := target.Open(ctx, url)
	if err != nil {
		return err
	}
	s3, ok := tgt.(*target.S3)
	if !ok {
		return fmt.Errorf("%s is no S3 target", target.Redact(url))
	}
	return s3.CreateBucket(ctx)
}

// findBinary looks for name on PATH, then in $GOPATH/bin (where go
// install puts it); "" when in neither.
func findBinary(ctx context.Context, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
