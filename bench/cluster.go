package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	repldspb "github.com/replds/replds/proto"
)

// maxMsg matches the replds client's message limit.
const maxMsg = 64 << 20

// server is one replds server process with the proxy its peers reach it
// through.
type server struct {
	name    string
	addr    string // real gRPC address, for clients
	dataDir string
	proxy   *proxy
	p       *proc
	pprof   string // pprof address with --profile
	conn    *grpc.ClientConn
	client  repldspb.RepldsClient
}

// cluster is a set of replds servers started by one bench phase.
type cluster struct {
	b       *bench
	dir     string
	env     []string // added to the servers' environment, after --server-env
	servers []*server
}

var startedRE = regexp.MustCompile(`msg="server started" addr=(\S+)`)

// newCluster starts n servers in a new directory under the bench's work
// directory, each peered with the first through the proxies.
func (b *bench) newCluster(ctx context.Context, name string, n int) (*cluster, error) {
	return b.newClusterEnv(ctx, name, n, nil)
}

// newClusterEnv is newCluster with env added to the servers' environment.
func (b *bench) newClusterEnv(ctx context.Context, name string, n int, env []string) (*cluster, error) {
	c := &cluster{b: b, dir: filepath.Join(b.work, name), env: env}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	for range n {
		if _, err := c.add(ctx); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// add starts one more server, peered with every running one.
func (c *cluster) add(ctx context.Context) (*server, error) {
	i := len(c.servers)
	s := &server{name: fmt.Sprintf("s%d", i+1), dataDir: filepath.Join(c.dir, fmt.Sprintf("s%d", i+1))}
	px, err := newProxy()
	if err != nil {
		return nil, err
	}
	s.proxy = px
	var peers []string
	for _, o := range c.servers {
		peers = append(peers, o.proxy.addr())
	}
	c.servers = append(c.servers, s)
	if err := c.run(ctx, s, peers); err != nil {
		return nil, err
	}
	return s, nil
}

// restart stops server s (SIGTERM) and starts it again on its data
// directory, behind the same proxy, peered with the others.
func (c *cluster) restart(ctx context.Context, s *server) error {
	return c.restartWith(ctx, s, nil)
}

// restartWith is restart that calls between, if not nil, while s is
// stopped.
func (c *cluster) restartWith(ctx context.Context, s *server, between func() error) error {
	s.conn.Close()
	s.p.stop(10 * time.Second)
	if between != nil {
		if err := between(); err != nil {
			return err
		}
	}
	var peers []string
	for _, o := range c.servers {
		if o != s {
			peers = append(peers, o.proxy.addr())
		}
	}
	return c.run(ctx, s, peers)
}

// run starts the process of s and connects a client to it.
func (c *cluster) run(ctx context.Context, s *server, peers []string) error {
	px := s.proxy
	args := []string{"server",
		"--addr=127.0.0.1:0", "--gossip-addr=127.0.0.1:0",
		"--advertise-addr=" + px.addr(),
		"--data-dir=" + s.dataDir, "--name=" + s.name,
		"--sync-interval=" + c.b.opts.syncInterval.String(),
		"--log-level=" + c.b.opts.serverLogLevel,
	}
	for _, p := range peers {
		args = append(args, "--peer="+p)
	}
	env := append(slices.Clone(c.b.opts.serverEnv), c.env...)
	expect := []*regexp.Regexp{startedRE}
	if c.b.opts.profile {
		env = append(env, "REPLDS_BENCH_PPROF=127.0.0.1:0")
		expect = append(expect, pprofRE)
	}
	p, err := c.b.procs.start(s.name, filepath.Join(c.dir, s.name+".log"), env, expect, c.b.bin, args...)
	if err != nil {
		return err
	}
	s.p = p
	started := p.matches[0]
	var profiling <-chan []string
	if c.b.opts.profile {
		profiling = p.matches[1]
	}
	m, err := p.waitLine(ctx, started, 5*time.Minute)
	if err != nil {
		return err
	}
	s.addr = m[1]
	px.setTarget(s.addr)
	if profiling != nil {
		select {
		case m := <-profiling:
			s.pprof = m[1]
		default:
			c.b.logf("%s: no pprof address (--profile)", s.name)
		}
	}
	s.conn, err = grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)))
	if err != nil {
		return err
	}
	s.client = repldspb.NewRepldsClient(s.conn)
	return nil
}

// close stops every server (SIGTERM, then SIGKILL) and its proxy.
func (c *cluster) close() {
	for _, s := range c.servers {
		if s.conn != nil {
			s.conn.Close()
		}
		if s.p != nil {
			s.p.stop(5 * time.Second)
		}
		s.proxy.close()
	}
	c.servers = nil
	if !c.b.opts.keep {
		os.RemoveAll(c.dir)
	}
}

// cpu returns the CPU time used so far by each server, by name, and by
// the bench process as "bench". A server it cannot read is left out.
func (c *cluster) cpu() map[string]time.Duration {
	out := map[string]time.Duration{"bench": selfCPU()}
	for _, s := range c.servers {
		if d, err := cpuTime(s.p.pid()); err == nil {
			out[s.name] = d
		}
	}
	return out
}

func (c *cluster) pids() []int {
	var out []int
	for _, s := range c.servers {
		out = append(out, s.p.pid())
	}
	return out
}

// memory reads the RssAnon and VmRSS of every server.
func (c *cluster) memory() (groupMem, error) {
	var ps []namedProc
	for _, s := range c.servers {
		ps = append(ps, namedProc{name: s.name, p: s.p})
	}
	return memOf(ps)
}

// dataDirs lists the servers' data directories.
func (c *cluster) dataDirs() []string {
	var dirs []string
	for _, s := range c.servers {
		dirs = append(dirs, s.dataDir)
	}
	return dirs
}

// namedProc is a process the bench started, with the name its figures are
// reported under.
type namedProc struct {
	name string
	p    *proc
}

// groupMem is the memory of a group of processes.
type groupMem struct {
	anon, rss int64    // the largest RssAnon and the largest VmRSS, in bytes
	detail    []string // each process's "name RssAnon/VmRSS", in MiB
}

// details joins the per-process figures for a note: "s1 40/52, s2 38/50".
func (g groupMem) details() string { return strings.Join(g.detail, ", ") }

// memOf reads the RssAnon and VmRSS of every process of ps.
func memOf(ps []namedProc) (groupMem, error) {
	var g groupMem
	for _, np := range ps {
		anon, rss, err := rssAnon(np.p.pid())
		if err != nil {
			return groupMem{}, fmt.Errorf("memory of %s: %w", np.name, err)
		}
		g.anon, g.rss = max(g.anon, anon), max(g.rss, rss)
		g.detail = append(g.detail, fmt.Sprintf("%s %.0f/%.0f", np.name, mib(anon), mib(rss)))
	}
	return g, nil
}

// waitMembers waits until every server lists n alive members.
func (c *cluster) waitMembers(ctx context.Context, n int, timeout time.Duration) error {
	return poll(ctx, timeout, 100*time.Millisecond, func() error {
		for _, s := range c.servers {
			st, err := s.client.Status(ctx, &repldspb.StatusRequest{})
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range st.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s sees %d alive members, want %d", s.name, alive, n)
			}
		}
		return nil
	})
}

// waitConverged waits until every server holds nodes live leaves and all
// have the same hash root.
func (c *cluster) waitConverged(ctx context.Context, nodes uint64, timeout time.Duration) error {
	return poll(ctx, timeout, 50*time.Millisecond, func() error {
		var root []byte
		for i, s := range c.servers {
			st, err := s.client.Status(ctx, &repldspb.StatusRequest{})
			if err != nil {
				return err
			}
			if st.Nodes != nodes {
				return fmt.Errorf("%s holds %d nodes, want %d", s.name, st.Nodes, nodes)
			}
			if i == 0 {
				root = st.Root
			} else if !bytes.Equal(root, st.Root) {
				return fmt.Errorf("%s has another hash root than %s", s.name, c.servers[0].name)
			}
		}
		return nil
	})
}

// poll calls cond every interval until it returns nil or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// traffic is the proxies' counters at one instant.
type traffic struct {
	total   int64
	methods map[string]methodStats
}

func (c *cluster) traffic() traffic {
	t := traffic{methods: map[string]methodStats{}}
	for _, s := range c.servers {
		total, m := s.proxy.snapshot()
		t.total += total
		for k, v := range m {
			acc := t.methods[k]
			acc.RPCs += v.RPCs
			acc.Requests += v.Requests
			acc.Replies += v.Replies
			t.methods[k] = acc
		}
	}
	return t
}

// sub returns t - o.
func (t traffic) sub(o traffic) traffic {
	d := traffic{total: t.total - o.total, methods: map[string]methodStats{}}
	for k, v := range t.methods {
		ov := o.methods[k]
		v.RPCs -= ov.RPCs
		v.Requests -= ov.Requests
		v.Replies -= ov.Replies
		if v != (methodStats{}) {
			d.methods[k] = v
		}
	}
	return d
}

// summary writes the total and the largest methods: "210 MiB (Push 190
// MiB, Sync 20 MiB)".
func (t traffic) summary() string {
	type kv struct {
		k string
		v int64
	}
	var ms []kv
	for k, v := range t.methods {
		ms = append(ms, kv{k, v.Requests + v.Replies})
	}
	slices.SortFunc(ms, func(a, b kv) int { return int(b.v - a.v) })
	var parts []string
	for _, m := range ms {
		if m.v >= t.total/100 && len(parts) < 4 {
			parts = append(parts, fmt.Sprintf("%s %s", m.k, bytesText(m.v)))
		}
	}
	return fmt.Sprintf("%s (%s)", bytesText(t.total), strings.Join(parts, ", "))
}

// nodePath names node i of a generated tree: 1000 leaves per directory.
func nodePath(prefix string, i int) string {
	return fmt.Sprintf("%s/d%04d/f%07d", prefix, i/1000, i)
}

// nodeData fills buf with data unique to node i (and gen, so a rewrite
// changes it).
func nodeData(buf []byte, i, gen int) {
	x := uint64(i)*0x9e3779b97f4a7c15 + uint64(gen)*0xbf58476d1ce4e5b9 + 1
	for j := 0; j+8 <= len(buf); j += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(buf[j:], x)
	}
}

// Bounds of one Store RPC of load: at most loadBatchWrites writes and
// loadBatchBytes of data.
const (
	loadBatchWrites = 20000
	loadBatchBytes  = 32 << 20
)

// loadBatch returns the number of nodes of size bytes load sends per
// Store RPC.
func loadBatch(size int) int {
	return max(1, min(loadBatchWrites, loadBatchBytes/max(size, 1)))
}

// loadVia describes the Store RPCs load sends for nodes of size bytes:
// "Store RPCs of 20k nodes, 20 MiB".
func loadVia(size int) string {
	per := loadBatch(size)
	return fmt.Sprintf("Store RPCs of %s nodes, %s", count(per), bytesText(int64(per)*int64(size)))
}

// load writes n generated nodes of size bytes under prefix to s, in
// batches of loadBatch(size) nodes, and returns when s acknowledged them
// all.
func load(ctx context.Context, s *server, prefix string, n, size int) error {
	per := loadBatch(size)
	for start := 0; start < n; start += per {
		end := min(n, start+per)
		arena := make([]byte, (end-start)*size)
		req := &repldspb.StoreRequest{Writes: make([]*repldspb.Write, 0, end-start)}
		for i := start; i < end; i++ {
			d := arena[(i-start)*size : (i-start+1)*size]
			nodeData(d, i, 0)
			req.Writes = append(req.Writes, &repldspb.Write{Path: nodePath(prefix, i), Data: d})
		}
		if _, err := s.client.Store(ctx, req); err != nil {
			return fmt.Errorf("store nodes %d..%d on %s: %w", start, end, s.name, err)
		}
	}
	return nil
}

// writeTree writes n generated files of size bytes under dir, laid out as
// nodePath does.
func writeTree(dir string, n, size int) error {
	buf := make([]byte, size)
	for i := range n {
		p := filepath.Join(dir, filepath.FromSlash(nodePath("", i)))
		if i%1000 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
		}
		nodeData(buf, i, 0)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// diskUsage returns the allocated size (st_blocks) and the apparent size
// of everything under dir.
func diskUsage(dir string) (alloc, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			alloc += st.Blocks * 512
		}
		if !d.IsDir() {
			apparent += fi.Size()
		}
		return nil
	})
	return alloc, apparent, err
}

// largestDiskUsage returns the largest allocated and the largest apparent
// size (see diskUsage) among dirs.
func largestDiskUsage(dirs []string) (alloc, apparent int64, err error) {
	for _, dir := range dirs {
		a, p, err := diskUsage(dir)
		if err != nil {
			return 0, 0, err
		}
		alloc, apparent = max(alloc, a), max(apparent, p)
	}
	return alloc, apparent, nil
}

// countFiles counts the regular files under dir.
func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n, err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
