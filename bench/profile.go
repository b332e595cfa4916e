package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// profileHook is compiled into replds for --profile runs only, through a
// build overlay (the repository is not touched): with REPLDS_BENCH_PPROF
// set, the server serves net/http/pprof and two endpoints that start and
// stop a CPU profile into a file, so the bench can profile exactly one
// phase of a real process.
const profileHook = `package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/pprof"
	"sync"
)

func init() {
	addr := os.Getenv("REPLDS_BENCH_PPROF")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench pprof:", err)
		return
	}
	var (
		mu sync.Mutex
		f  *os.File
	)
	http.HandleFunc("/bench/cpu/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if f, err = os.Create(r.URL.Query().Get("file")); err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	http.HandleFunc("/bench/cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		pprof.StopCPUProfile()
		if f != nil {
			f.Close()
			f = nil
		}
	})
	fmt.Fprintf(os.Stderr, "bench pprof listening on %s\n", ln.Addr())
	go http.Serve(ln, nil)
}
`

var pprofRE = regexp.MustCompile(`bench pprof listening on (\S+)`)

// buildOverlay writes the overlay that adds profileHook to cmd/replds and
// returns the -overlay argument.
func (b *bench) buildOverlay(root string) (string, error) {
	hook := filepath.Join(b.work, "zz_bench_pprof.go")
	if err := os.WriteFile(hook, []byte(profileHook), 0o644); err != nil {
		return "", err
	}
	ov, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(root, "cmd", "replds", "zz_bench_pprof.go"): hook},
	})
	if err != nil {
		return "", err
	}
	p := filepath.Join(b.work, "overlay.json")
	return "-overlay=" + p, os.WriteFile(p, ov, 0o644)
}

// profiled runs f while the given servers record CPU profiles, saved as
// --out/profiles/NAME-SERVER.cpu.pprof. Without --profile it just runs f.
func (b *bench) profiled(ctx context.Context, name string, servers []*server, f func() error) error {
	if !b.opts.profile {
		return f()
	}
	dir := filepath.Join(b.opts.out, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var started []*server
	for _, s := range servers {
		if s.pprof == "" {
			continue
		}
		file, err := filepath.Abs(filepath.Join(dir, fmt.Sprintf("%s-%s.cpu.pprof", name, s.name)))
		if err != nil {
			return err
		}
		if err := pprofGet(ctx, s, "/bench/cpu/start?file="+url.QueryEscape(file), io.Discard); err != nil {
			b.logf("profile %s on %s: %v", name, s.name, err)
			continue
		}
		started = append(started, s)
	}
	err := f()
	for _, s := range started {
		if err := pprofGet(context.Background(), s, "/bench/cpu/stop", io.Discard); err != nil {
			b.logf("profile %s on %s: %v", name, s.name, err)
		}
	}
	return err
}

// heapProfile saves the heap profile of s as --out/profiles/NAME-SERVER.heap.pprof.
func (b *bench) heapProfile(ctx context.Context, name string, s *server) {
	if !b.opts.profile || s.pprof == "" {
		return
	}
	dir := filepath.Join(b.opts.out, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s.heap.pprof", name, s.name)))
	if err != nil {
		return
	}
	defer f.Close()
	if err := pprofGet(ctx, s, "/debug/pprof/heap?gc=1", f); err != nil {
		b.logf("heap profile %s on %s: %v", name, s.name, err)
	}
	// The text form ends with the runtime's MemStats (stacks, idle spans).
	t, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s.heap.txt", name, s.name)))
	if err != nil {
		return
	}
	defer t.Close()
	if err := pprofGet(ctx, s, "/debug/pprof/heap?debug=1", t); err != nil {
		b.logf("heap profile %s on %s: %v", name, s.name, err)
	}
}

func pprofGet(ctx context.Context, s *server, path string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+s.pprof+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
