package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// quiet silences a benchmark server (benchmark logs are always printed)
// and keeps its own sync loop out of the measurements.
func quiet(_ int, cfg *server.Config) {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.SyncInterval = time.Hour
	cfg.BookmarkInterval = time.Hour
}

// storeNodes writes n nodes of 1 KiB under prefix, in Store calls of 5000.
func storeNodes(b *testing.B, c repldspb.RepldsClient, prefix string, n, gen int) {
	b.Helper()
	data := make([]byte, 1024)
	for start := 0; start < n; start += 5000 {
		req := &repldspb.StoreRequest{}
		for i := start; i < min(n, start+5000); i++ {
			d := make([]byte, len(data))
			copy(d, fmt.Sprintf("%d/%d", gen, i))
			req.Writes = append(req.Writes, &repldspb.Write{Path: fmt.Sprintf("%s/d%03d/f%06d", prefix, i/1000, i), Data: d})
		}
		if _, err := c.Store(context.Background(), req); err != nil {
			b.Fatalf("Store: %v", err)
		}
	}
}

// BenchmarkSync_Round times one digest sync round (server.MeasureSyncRound:
// dial, Sync, apply) between two servers holding 10k nodes, when they are
// equal and when the responder has k changes the asker lacks, and reports
// the bytes the round exchanged. The two servers are not members of one
// cluster, so no eager push or background round interferes.
func BenchmarkSync_Round(b *testing.B) {
	const nodes = 10000
	for _, k := range []int{0, 1, 100, 1000} {
		name := "equal"
		if k > 0 {
			name = fmt.Sprintf("changes=%d", k)
		}
		b.Run(name, func(b *testing.B) {
			asker := servertest.NewCluster(b, 1, quiet)
			responder := servertest.NewCluster(b, 1, quiet)
			storeNodes(b, responder.Client(0), "/bench", nodes, 0)
			ctx := context.Background()
			if _, err := server.MeasureSyncRound(ctx, asker.Server(0), responder.Addr(0)); err != nil {
				b.Fatalf("initial sync: %v", err)
			}
			var total int64
			b.ResetTimer()
			for i := range b.N {
				if k > 0 {
					b.StopTimer()
					storeNodes(b, responder.Client(0), "/bench", k, i+1)
					b.StartTimer()
				}
				n, err := server.MeasureSyncRound(ctx, asker.Server(0), responder.Addr(0))
				if err != nil {
					b.Fatalf("sync round: %v", err)
				}
				total += n
			}
			b.StopTimer()
			b.ReportMetric(float64(total)/float64(b.N), "wireB/round")
			if a, r := asker.Server(0).DB().Root(), responder.Server(0).DB().Root(); a != r {
				b.Errorf("after the rounds, roots differ: %x and %x", a, r)
			}
		})
	}
}

// BenchmarkWatch_FanOut opens N Watch streams on one server and times one
// write until every stream has received it.
func BenchmarkWatch_FanOut(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			c := servertest.NewCluster(b, 1, quiet)
			client := c.Client(0)
			if _, err := client.Store(context.Background(), &repldspb.StoreRequest{
				Writes: []*repldspb.Write{{Path: "/w/seed", Data: []byte("seed")}},
			}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var streams sync.WaitGroup
			b.Cleanup(func() {
				cancel()
				streams.Wait()
			})
			// The server allows 4096 streams per connection.
			const perConn = 1000
			var conns []*grpc.ClientConn
			for range (n + perConn - 1) / perConn {
				conns = append(conns, servertest.Dial(b, c.Addr(0), c.DialOptions()...))
			}
			var synced, got sync.WaitGroup
			synced.Add(n)
			streams.Add(n)
			for i := range n {
				go func() {
					defer streams.Done()
					w, err := repldspb.NewRepldsClient(conns[i/perConn]).Watch(ctx, &repldspb.WatchRequest{Prefix: "/w"})
					if err != nil {
						b.Error(err)
						synced.Done()
						return
					}
					first := true
					for {
						msg, err := w.Recv()
						if err != nil {
							if first {
								synced.Done()
							}
							return
						}
						if first && msg.Synced {
							first = false
							synced.Done()
							continue
						}
						if !first && len(msg.Nodes) > 0 {
							got.Done()
						}
					}
				}()
			}
			synced.Wait()
			b.ResetTimer()
			for i := range b.N {
				got.Add(n)
				if _, err := client.Store(context.Background(), &repldspb.StoreRequest{
					Writes: []*repldspb.Write{{Path: "/w/x", Data: []byte(fmt.Sprint(i))}},
				}); err != nil {
					b.Fatal(err)
				}
				got.Wait()
			}
		})
	}
}

// BenchmarkWriter_Write times small writes through a server's Writer, the
// one write path of the Store RPC and the server's own writers, from 16
// goroutines at once (so that group commits gather them).
func BenchmarkWriter_Write(b *testing.B) {
	c := servertest.NewCluster(b, 1, quiet)
	w := c.Server(0).Writer()
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := fmt.Sprintf("/bench/%d", next.Add(1)%1000)
			if _, err := w.Write(ctx, []store.Write{{Path: p, Data: []byte("x")}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
