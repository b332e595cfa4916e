package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/store"
)

// BenchmarkStore_Compact compacts a store of n nodes of 1 KiB (1% of them
// deleted) while one writer stores a node at a time: compact-ms is how
// long a compaction took, held-ms how long of it the committer was held,
// stall-ms the longest a write took meanwhile and write-ms the writer's
// median otherwise (both with their fsync).
func BenchmarkStore_Compact(b *testing.B) {
	for _, n := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			path := b.TempDir() + "/store.db"
			load := store.DefaultConfig(path)
			load.Logger = discard
			load.NoSync = true
			s := openStore(b, load)
			data := make([]byte, 1024)
			const page = 2000
			ws := make([]store.Write, 0, page)
			for i := 0; i < n; i++ {
				ws = append(ws, store.Write{Path: fmt.Sprintf("/bench/d%04d/f%07d", i/1000, i), Data: data})
				if len(ws) == page || i == n-1 {
					if _, err := s.Write(context.Background(), ws); err != nil {
						b.Fatal(err)
					}
					ws = ws[:0]
				}
			}
			for i := 0; i < n; i += 100 {
				ws = append(ws, store.Write{Path: fmt.Sprintf("/bench/d%04d/f%07d", i/1000, i), Delete: true})
				if len(ws) == page {
					if _, err := s.Write(context.Background(), ws); err != nil {
						b.Fatal(err)
					}
					ws = ws[:0]
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			cfg := store.DefaultConfig(path)
			cfg.Logger = discard
			s = openStore(b, cfg)

			ctx, cancel := context.WithCancel(context.Background())
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				stall time.Duration
				lats  []time.Duration
			)
			compacting := make(chan bool, 1)
			baseline := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					start := time.Now()
					// Distinct data: a write of what a leaf holds commits nothing.
					v := binary.BigEndian.AppendUint64(slices.Clone(data[:1016]), uint64(i))
					if _, err := s.Write(ctx, []store.Write{{Path: fmt.Sprintf("/live/%d", i%100), Data: v}}); err != nil {
						return
					}
					d := time.Since(start)
					mu.Lock()
					select {
					case <-compacting:
						stall = max(stall, d)
						compacting <- true
					default:
						lats = append(lats, d)
						if len(lats) == 20 {
							close(baseline)
						}
					}
					mu.Unlock()
				}
			}()
			<-baseline
			var took, held time.Duration
			var st store.CompactStats
			b.ResetTimer()
			for b.Loop() {
				compacting <- true
				var err error
				if st, err = s.Compact(ctx); err != nil {
					b.Fatal(err)
				}
				took += st.Took
				held += st.Stall
				// The write in flight when the compaction ended counts.
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
				<-compacting
				mu.Unlock()
			}
			b.StopTimer()
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "compact-ms")
			b.ReportMetric(float64(held.Milliseconds())/float64(b.N), "held-ms")
			b.ReportMetric(float64(stall.Milliseconds()), "stall-ms")
			b.ReportMetric(float64(st.After)/(1<<20), "file-MiB")
			if len(lats) > 0 {
				b.ReportMetric(float64(median(lats).Microseconds())/1000, "write-ms")
			}
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
