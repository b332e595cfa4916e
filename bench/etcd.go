package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// etcdBench runs the comparable rows against a 3-member etcd cluster on
// loopback, driven through etcd's HTTP/JSON gateway (/v3/kv/put,
// /v3/kv/range, /v3/watch) with net/http, so the bench needs no etcd
// client module.
type etcdBench struct {
	b       *bench
	dir     string
	members []*etcdMember
	http    *http.Client
}

type etcdMember struct {
	name    string
	client  string // http://127.0.0.1:PORT
	peer    string
	dataDir string
	p       *proc
}

// etcdWriters is the number of concurrent writers of the store row.
const etcdWriters = 16

// etcdBinary returns the etcd server binary, installing Debian's
// etcd-server and etcd-client packages when it is missing. Nothing is
// downloaded from anywhere else.
func (b *bench) etcdBinary(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", "etcd-server").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Candidate:") || strings.Contains(string(out), "Candidate: (none)") {
		return "", fmt.Errorf("etcd is not installed and apt has no etcd-server package (apt-cache policy etcd-server: %s)", strings.TrimSpace(string(out)))
	}
	if os.Geteuid() != 0 {
		return "", errors.New("etcd is not installed; run as root or: apt-get install -y etcd-server etcd-client")
	}
	b.logf("installing etcd from Debian: apt-get install -y etcd-server etcd-client")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "etcd-server", "etcd-client")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install etcd-server etcd-client: %w: %s", err, lastLines(out, 5))
	}
	return exec.LookPath("etcd")
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// freePorts returns n loopback ports that were free a moment ago (etcd
// cannot be told to pick its own).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// etcdPhase runs the store, latency, memory and disk rows on etcd and
// attaches the figures to replds' metrics.
func (b *bench) etcdPhase(ctx context.Context) error {
	if !b.row("store") && !b.row("latency") && !b.row("memory") && !b.row("disk") {
		return nil
	}
	bin, err := b.etcdBinary(ctx)
	if err != nil {
		return err
	}
	version, _ := exec.CommandContext(ctx, bin, "--version").Output()
	b.logf("etcd phase: 3 members (%s)", strings.Join(strings.Fields(string(version)), " "))
	e := &etcdBench{b: b, dir: filepath.Join(b.work, "etcd"),
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * etcdWriters}}}
	defer e.close()
	if err := e.start(ctx, bin); err != nil {
		return err
	}
	b.res.Etcd = map[string]any{"version": strings.TrimSpace(string(version)), "writers": etcdWriters}
	n := b.opts.nodes
	if b.row("store") || b.row("memory") || b.row("disk") {
		if err := e.storeRow(ctx, n); err != nil {
			return err
		}
		if err := sleep(ctx, b.opts.idle); err != nil {
			return err
		}
		mem, err := e.memory()
		if err != nil {
			return err
		}
		b.logf("etcd holding %d x %s: RssAnon %.0f MiB, VmRSS %.0f MiB (RssAnon/VmRSS MiB: %s)",
			n, bytesText(int64(b.opts.size)), mib(mem.anon), mib(mem.rss), mem.details())
		b.res.Etcd["memory"] = map[string]any{"nodes": n, "rss_anon_mib": mib(mem.anon), "vm_rss_mib": mib(mem.rss), "members": mem.detail}
		if b.row("memory") && slices.Contains(b.opts.scales, n) {
			b.res.setEtcd(fmt.Sprintf("memory/%d", n), mib(mem.anon), "MiB", fmt.Sprintf("RssAnon; VmRSS %.0f MiB", mib(mem.rss)))
		}
		worst, _, err := largestDiskUsage(e.dataDirs())
		if err != nil {
			return err
		}
		data := int64(n) * int64(b.opts.size)
		b.res.Etcd["disk"] = map[string]any{"bytes": worst, "ratio": float64(worst) / float64(data)}
		if b.row("disk") {
			b.res.setEtcd("disk", float64(worst)/float64(data), "x", fmt.Sprintf("%.0f MiB, WAL included", mib(worst)))
		}
	}
	if b.row("latency") {
		if err := e.latencyRow(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (e *etcdBench) start(ctx context.Context, bin string) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	var initial []string
	for i := range 3 {
		m := &etcdMember{
			name:    fmt.Sprintf("e%d", i+1),
			client:  "http://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			peer:    "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			dataDir: filepath.Join(e.dir, fmt.Sprintf("e%d", i+1)),
		}
		e.members = append(e.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	for _, m := range e.members {
		p, err := e.b.procs.start("etcd-"+m.name, filepath.Join(e.dir, m.name+".log"), nil, nil, bin,
			"--name="+m.name, "--data-dir="+m.dataDir,
			"--listen-client-urls="+m.client, "--advertise-client-urls="+m.client,
			"--listen-peer-urls="+m.peer, "--initial-advertise-peer-urls="+m.peer,
			"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new",
			"--initial-cluster-token=replds-bench", "--logger=zap", "--log-level=warn")
		if err != nil {
			return err
		}
		m.p = p
	}
	return poll(ctx, time.Minute, 100*time.Millisecond, func() error {
		for _, m := range e.members {
			var h struct{ Health string }
			if err := e.get(ctx, m, "/health", &h); err != nil {
				return err
			}
			if h.Health != "true" {
				return fmt.Errorf("%s not healthy", m.name)
			}
		}
		return nil
	})
}

// memory reads the RssAnon and VmRSS of every member.
func (e *etcdBench) memory() (groupMem, error) {
	var ps []namedProc
	for _, m := range e.members {
		ps = append(ps, namedProc{name: m.name, p: m.p})
	}
	return memOf(ps)
}

// dataDirs lists the members' data directories.
func (e *etcdBench) dataDirs() []string {
	var dirs []string
	for _, m := range e.members {
		dirs = append(dirs, m.dataDir)
	}
	return dirs
}

func (e *etcdBench) close() {
	for _, m := range e.members {
		if m.p != nil {
			m.p.stop(5 * time.Second)
		}
	}
	e.http.CloseIdleConnections()
	if !e.b.opts.keep {
		os.RemoveAll(e.dir)
	}
}

func (e *etcdBench) get(ctx context.Context, m *etcdMember, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", m.client+path, nil)
	if err != nil {
		return err
	}
	return e.do(req, out)
}

func (e *etcdBench) post(ctx context.Context, m *etcdMember, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", m.client+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return e.do(req, out)
}

func (e *etcdBench) do(req *http.Request, out any) error {
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, msg)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// put writes key = value through member m.
func (e *etcdBench) put(ctx context.Context, m *etcdMember, key string, value []byte) error {
	return e.post(ctx, m, "/v3/kv/put", map[string]string{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)}, nil)
}

// count returns how many keys under prefix member m holds locally
// (serializable read: no round trip to the leader).
func (e *etcdBench) count(ctx context.Context, m *etcdMember, prefix string) (int, error) {
	var resp struct {
		Count string `json:"count"`
	}
	err := e.post(ctx, m, "/v3/kv/range", map[string]any{
		"key": b64(prefix), "range_end": b64(prefixEnd(prefix)), "count_only": true, "serializable": true,
	}, &resp)
	if err != nil {
		return 0, err
	}
	if resp.Count == "" {
		return 0, nil
	}
	return strconv.Atoi(resp.Count)
}

// prefixEnd is the range end covering every key starting with prefix.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	b[len(b)-1]++
	return string(b)
}

// storeRow puts n generated keys through the first member with
// etcdWriters concurrent writers and times it until every member holds
// them all. The first failed put stops every writer.
func (e *etcdBench) storeRow(ctx context.Context, n int) error {
	b := e.b
	m1 := e.members[0]
	var next atomic.Int64
	var wg sync.WaitGroup
	// Each writer sends at most one error; the first failure is the first
	// one sent, as the others can only fail after it cancelled wctx.
	errs := make(chan error, etcdWriters)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for range etcdWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := make([]byte, b.opts.size)
			for wctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				nodeData(data, i, 0)
				key := nodePath(dataPrefix, i)
				if err := e.put(wctx, m1, key, data); err != nil {
					errs <- fmt.Errorf("%s: %w", key, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("etcd put: %w", err)
	}
	acked := time.Since(start)
	err := poll(ctx, convergeTimeout, 50*time.Millisecond, func() error {
		for _, m := range e.members {
			c, err := e.count(ctx, m, dataPrefix+"/")
			if err != nil {
				return err
			}
			if c != n {
				return fmt.Errorf("%s holds %d keys, want %d", m.name, c, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	b.logf("etcd store: %d keys acknowledged in %v, on all 3 members in %v", n, acked.Round(time.Millisecond), took.Round(time.Millisecond))
	b.res.Etcd["store"] = map[string]any{"nodes": n, "acknowledged_s": acked.Seconds(), "converged_s": took.Seconds()}
	if b.row("store") {
		b.res.setEtcd("store", took.Seconds(), "s", fmt.Sprintf("%d concurrent writers, one put per key", etcdWriters))
	}
	return nil
}

// latencyRow measures, like replds' row, the time from a put on the first
// member until a watch on the third delivers the event.
func (e *etcdBench) latencyRow(ctx context.Context) error {
	m1, m3 := e.members[0], e.members[2]
	prefix := latPrefix + "/"
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"create_request": map[string]string{"key": b64(prefix), "range_end": b64(prefixEnd(prefix))}})
	req, err := http.NewRequestWithContext(wctx, "POST", m3.client+"/v3/watch", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd watch: %s", resp.Status)
	}
	events := make(chan renameEvent, 1024)
	created := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		dec := json.NewDecoder(resp.Body)
		once := sync.Once{}
		for {
			var msg struct {
				Result struct {
					Created bool `json:"created"`
					Events  []struct {
						Kv struct {
							Key string `json:"key"`
						} `json:"kv"`
					} `json:"events"`
				} `json:"result"`
			}
			if err := dec.Decode(&msg); err != nil {
				return
			}
			at := time.Now()
			if msg.Result.Created {
				once.Do(func() { close(created) })
			}
			for _, ev := range msg.Result.Events {
				k, err := base64.StdEncoding.DecodeString(ev.Kv.Key)
				if err != nil {
					continue
				}
				select {
				case events <- renameEvent{name: strings.TrimPrefix(string(k), prefix), at: at}:
				default:
				}
			}
		}
	}()
	select {
	case <-created:
	case <-time.After(30 * time.Second):
		return errors.New("etcd watch not created after 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
	write := func(ctx context.Context, path string, data []byte) error { return e.put(ctx, m1, path, data) }
	lat, acks, err := measureLatency(ctx, e.b.opts.samples, e.b.opts.size, latPrefix, write, events)
	if err != nil {
		return fmt.Errorf("etcd latency: %w", err)
	}
	e.b.addLatency("etcd", lat, acks)
	return nil
}
