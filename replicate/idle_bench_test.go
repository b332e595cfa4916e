package replicate_test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/replicate"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// countingProxy forwards TCP connections to target and counts the bytes
// that cross it, both ways.
type countingProxy struct {
	ln     net.Listener
	target string
	bytes  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newCountingProxy(tb testing.TB, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &countingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *countingProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := pair[0].Read(buf)
					if n > 0 {
						p.bytes.Add(int64(n))
						if _, werr := pair[1].Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				pair[0].Close()
				pair[1].Close()
			}()
		}
	}
}

// live returns the bytes that crossed the proxy so far.
func (p *countingProxy) live() int64 { return p.bytes.Load() }

// BenchmarkReplicate_Idle measures what an idle job costs, with the
// production intervals (bookmarks, lag probes, vector raises, status
// refreshes): bytes per second between the runner and its source server
// (through a counting proxy) and bytes the destination servers push to
// each other (the status node, the vector raises), for prefixes of 1k and
// 20k nodes. Flat means the cost does not grow with the prefix.
func BenchmarkReplicate_Idle(b *testing.B) {
	for _, nodes := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			src := servertest.NewCluster(b, 1, quiet())
			dst := servertest.NewCluster(b, 3, quiet(), func(i int, cfg *server.Config) {
				cfg.JobKinds = func(s *server.Server) ([]jobs.Kind, error) {
					k, err := replicate.New(replicate.Config{Writer: s.Writer(), Vector: s.DB().Vector, Walk: s.DB().Walk, Allowed: s.Allowed, ClusterOrigins: s.ClusterOrigins})
					return []jobs.Kind{k}, err
				}
			})
			waitReady(b, dst)
			data := string(make([]byte, 1024))
			for i := 0; i < nodes; i += 1000 {
				ws := make([]*repldspb.Write, 0, 1000)
				for j := i; j < min(nodes, i+1000); j++ {
					ws = append(ws, servertest.Put(fmt.Sprintf("/idle/%05d", j), data))
				}
				src.Store(0, ws...)
			}
			proxy := newCountingProxy(b, src.Addr(0))
			define(b, dst, "idle", replicate.Spec{Source: []string{proxy.ln.Addr().String()}, SourcePrefix: "/idle"})
			dst.Wait(120*time.Second, "the copy on every destination server", func() error {
				for i := range dst.N() {
					got := 0
					dst.Server(i).DB().Walk("/idle", func(string, store.Meta) bool { got++; return true })
					if got != nodes {
						return fmt.Errorf("server %d holds %d nodes", i, got)
					}
				}
				return nil
			})
			b.ResetTimer()
			for range b.N {
				pushBefore := pushBytes(b, dst)
				before := proxy.live()
				start := time.Now()
				time.Sleep(20 * time.Second) // the measured window: the job idles
				window := time.Since(start)
				b.ReportMetric(float64(pushBytes(b, dst)-pushBefore)/window.Seconds(), "dest-push-B/s")
				b.ReportMetric(float64(proxy.live()-before)/window.Seconds(), "source-B/s")
			}
		})
	}
}

// pushBytes sums the push bytes the servers of c sent each other.
func pushBytes(b *testing.B, c *servertest.Cluster) float64 {
	var sum float64
	for i := range c.N() {
		sum += servertest.Gathered(b, c.Server(i), "replds_push_sent_bytes_total")
	}
	return sum
}
