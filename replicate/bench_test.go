package replicate_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/replicate"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// BenchmarkReplicate_InitialCopy measures an initial copy of 100k × 1 KiB
// nodes between two 3-server clusters: from the job's definition until
// every destination server holds every node (the runner applies, the
// others get the nodes by digest sync). It reports nodes/s.
func BenchmarkReplicate_InitialCopy(b *testing.B) {
	const nodes, size, batch = 100_000, 1024, 1000
	src := servertest.NewCluster(b, 3, quiet())
	dst := servertest.NewCluster(b, 3, withJobs(), quiet())
	data := string(make([]byte, size))
	for i := 0; i < nodes; i += batch {
		ws := make([]*repldspb.Write, 0, batch)
		for j := i; j < i+batch; j++ {
			ws = append(ws, servertest.Put(fmt.Sprintf("/bench/%03d/%05d", j/1000, j), data))
		}
		src.Store(i/batch%src.N(), ws...)
	}
	src.WaitConverged(60 * time.Second)
	b.ResetTimer()
	for n := range b.N {
		start := time.Now()
		dest := fmt.Sprintf("/copy%d", n)
		define(b, dst, fmt.Sprintf("bench%d", n), replicate.Spec{Source: addrs(src), SourcePrefix: "/bench", DestPrefix: dest})
		dst.Wait(120*time.Second, "every destination server holding the copy", func() error {
			for i := range dst.N() {
				got := 0
				dst.Server(i).DB().Walk(dest, func(string, store.Meta) bool { got++; return true })
				if got != nodes {
					return fmt.Errorf("server %d holds %d nodes", i, got)
				}
			}
			return nil
		})
		took := time.Since(start)
		b.ReportMetric(float64(nodes)/took.Seconds(), "nodes/s")
		b.ReportMetric(took.Seconds(), "s/copy")
	}
}

// BenchmarkReplicate_Latency measures, in steady state, the time from a
// single write acknowledged by a source server to its commit in the
// destination runner's store (where a pull client of the destination
// would get it from). It reports p50 and p99.
func BenchmarkReplicate_Latency(b *testing.B) {
	src := servertest.NewCluster(b, 3, quiet())
	dst := servertest.NewCluster(b, 3, withJobs(), quiet())
	waitReady(b, dst)
	src.Store(0, servertest.Put("/lat/first", "x"))
	define(b, dst, "lat", replicate.Spec{Source: addrs(src), SourcePrefix: "/lat"})
	waitHolds(b, dst, "/lat", map[string]string{"/lat/first": "x"})
	r := runner(dst)
	if r < 0 {
		b.Fatal("no runner")
	}
	sub := dst.Server(r).DB().Subscribe(1024)
	defer sub.Close()
	var took []time.Duration
	b.ResetTimer()
	for n := range b.N {
		path := fmt.Sprintf("/lat/n%d", n)
		start := time.Now()
		src.Store(n%src.N(), servertest.Put(path, "v"))
	wait:
		for {
			select {
			case ev, ok := <-sub.C():
				if !ok {
					b.Fatal("subscription closed")
				}
				for _, nd := range ev.Nodes {
					if nd.Path == path {
						break wait
					}
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("%s not replicated after 10s", path)
			}
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
