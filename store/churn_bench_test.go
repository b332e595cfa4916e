package store_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/replds/replds/store"
	"github.com/replds/replds/store/storetest"
)

var churnWrites = flag.Int("store.churn", 200_000, "writes (and as many deletes) of BenchmarkStore_Churn")

// BenchmarkStore_Churn runs a month of churn over a steady live set:
// store.churn short-lived paths (per-host tokens, rotated certificate
// paths), each written once and deleted once, 10,000 alive at any time,
// the simulated month spread over the run. With collection (a 24 h grace
// scaled to the month, collected every 5 simulated minutes as the server's
// loop does) disk and memory follow the live set; without, they follow
// every path ever written. It reports the store's file and the bytes in
// use in it, the heap after a GC, and the tombstones left.
//
//	go test -run '^$' -bench Churn -benchtime 1x ./store/ -store.churn=1000000
func BenchmarkStore_Churn(b *testing.B) {
	for _, collect := range []bool{false, true} {
		b.Run(fmt.Sprintf("collect=%v", collect), func(b *testing.B) {
			for range b.N {
				churn(b, *churnWrites, collect)
			}
		})
	}
}

func churn(b *testing.B, writes int, collect bool) {
	const (
		live  = 10_000
		batch = 100
		month = 30 * 24 * time.Hour
	)
	clock := storetest.NewClock(storetest.Epoch)
	cfg := store.DefaultConfig(b.TempDir() + "/store.db")
	cfg.Now = clock.Now
	cfg.Logger = discard
	cfg.NoSync = true
	s, err := store.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	batches := writes / batch
	step := month / time.Duration(batches)
	grace := 24 * time.Hour
	nextCollect := clock.Now().Add(5 * time.Minute)
	data := make([]byte, 100)
	path := func(i int) string { return fmt.Sprintf("/hosts/h%03d/token-%08d", i%1000, i) }
	for i := 0; i < batches; i++ {
		ws := make([]store.Write, 0, 2*batch)
		for j := range batch {
			n := i*batch + j
			ws = append(ws, store.Write{Path: path(n), Data: data})
			if n >= live {
				ws = append(ws, store.Write{Path: path(n - live), Delete: true})
			}
		}
		if _, err := s.Write(ctx, ws); err != nil {
			b.Fatal(err)
		}
		clock.Add(step)
		if collect && !clock.Now().Before(nextCollect) {
			nextCollect = clock.Now().Add(5 * time.Minute)
			before := store.VersionAt(clock.Now().Add(-grace))
			for more := true; more; {
				if _, more, err = s.Collect(ctx, before, s.Vector()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	file, used, err := s.DiskUse()
	if err != nil {
		b.Fatal(err)
	}
	st := s.Stats()
	if st.Nodes != live {
		b.Fatalf("%d live nodes after the churn, want %d", st.Nodes, live)
	}
	b.ReportMetric(float64(file)/(1<<20), "file-MiB")
	b.ReportMetric(float64(used)/(1<<20), "used-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(st.Tombstones), "tombstones")
}
