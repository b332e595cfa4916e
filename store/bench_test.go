package store_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/replds/replds/store"
)

// BenchmarkStore_WriteBatch writes batches of new 1 KiB leaves, as
// `replds store` of a directory tree does.
func BenchmarkStore_WriteBatch(b *testing.B) {
	for _, batch := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			cfg := store.DefaultConfig(b.TempDir() + "/store.db")
			cfg.Logger = discard
			s := openStore(b, cfg)
			data := make([]byte, 1024)
			ws := make([]store.Write, batch)
			b.SetBytes(int64(batch * len(data)))
			b.ResetTimer()
			for i := range b.N {
				for j := range ws {
					ws[j] = store.Write{Path: fmt.Sprintf("/bench/d%04d/f%07d", (i*batch+j)/1000, i*batch+j), Data: data}
				}
				if _, err := s.Write(context.Background(), ws); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/node")
		})
	}
}

// BenchmarkStore_ApplyPages applies pages of 1000 new 1 KiB nodes, as a
// server receiving a push or a sync does.
func BenchmarkStore_ApplyPages(b *testing.B) {
	const page = 1000
	cfg := store.DefaultConfig(b.TempDir() + "/store.db")
	cfg.Logger = discard
	s := openStore(b, cfg)
	data := make([]byte, 1024)
	nodes := make([]store.Node, page)
	b.SetBytes(page * int64(len(data)))
	b.ResetTimer()
	seq := uint64(0)
	for i := range b.N {
		for j := range nodes {
			seq++
			nodes[j] = store.Node{
				Path: fmt.Sprintf("/bench/d%04d/f%07d", i, j),
				Meta: store.Meta{Version: seq, Origin: 7, Seq: seq, Size: uint32(len(data))},
				Data: data,
			}
		}
		if n, err := s.Apply(context.Background(), nodes, nil); err != nil || n != page {
			b.Fatalf("Apply = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*page), "ns/node")
}

// BenchmarkStore_MemoryPerNode reports the Go heap a store keeps per node
// (radix tree, metadata, hash tree, bucket index) once 100k or 1M nodes
// are loaded. Data stays
// in bbolt's file mapping, which is not heap.
func BenchmarkStore_MemoryPerNode(b *testing.B) {
	for _, total := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("nodes=%d", total), func(b *testing.B) { memoryPerNode(b, total) })
	}
}

func memoryPerNode(b *testing.B, total int) {
	for range b.N {
		cfg := store.DefaultConfig(b.TempDir() + "/store.db")
		cfg.Logger = discard
		cfg.NoSync = true
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		s, err := store.Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		applyGenerated(b, s, "/bench/data", total)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(total), "heapB/node")
		runtime.KeepAlive(s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStore_Changes pages through the winners of 100k nodes written
// in path order, as a pusher or a Sync responder does after a bulk load.
func BenchmarkStore_Changes(b *testing.B) {
	const total, page = 100000, 5000
	cfg := store.DefaultConfig(b.TempDir() + "/store.db")
	cfg.Logger = discard
	cfg.NoSync = true
	s := openStore(b, cfg)
	data := make([]byte, 1024)
	ws := make([]store.Write, page)
	for i := 0; i < total; i += page {
		for j := range ws {
			ws[j] = store.Write{Path: fmt.Sprintf("/bench/d%04d/f%07d", (i+j)/1000, i+j), Data: data}
		}
		if _, err := s.Write(context.Background(), ws); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total * int64(len(data)))
	b.ResetTimer()
	for range b.N {
		after, n := uint64(0), 0
		for {
			nodes, last, more, err := s.Changes(s.Origin(), after, 1000, 4<<20)
			if err != nil {
				b.Fatal(err)
			}
			n += len(nodes)
			after = last
			if !more {
				break
			}
		}
		if n != total {
			b.Fatalf("Changes returned %d nodes, want %d", n, total)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/node")
}

// loadStore returns a store holding total nodes of 16 bytes applied from
// one remote origin, in pages, without fsync.
func loadStore(b *testing.B, total int) *store.Store {
	return loadStoreAt(b, b.TempDir()+"/store.db", total)
}

// loadStoreAt is loadStore of a file at path.
func loadStoreAt(b *testing.B, path string, total int) *store.Store {
	cfg := store.DefaultConfig(path)
	cfg.Logger = discard
	cfg.NoSync = true
	s := openStore(b, cfg)
	applyGenerated(b, s, "/bench", total)
	return s
}

// applyGenerated applies total nodes of 16 bytes from one remote origin
// to s, 1000 to a directory under prefix, in pages of 5000.
func applyGenerated(b *testing.B, s *store.Store, prefix string, total int) {
	const page = 5000
	data := make([]byte, 16)
	nodes := make([]store.Node, page)
	seq := uint64(0)
	for i := 0; i < total; i += page {
		nodes = nodes[:min(page, total-i)]
		for j := range nodes {
			seq++
			nodes[j] = store.Node{
				Path: fmt.Sprintf("%s/d%04d/f%07d", prefix, (i+j)/1000, i+j),
				Meta: store.Meta{Version: seq, Origin: 7, Seq: seq},
				Data: data,
			}
		}
		if _, err := s.Apply(context.Background(), nodes, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFeed_Resume resumes a feed of the whole tree from a bookmark
// 100 changes behind, in stores of 100k and 1M nodes, until it has caught
// up: through the Feed (which reads the change index), and by scanning the
// prefix for what the bookmark lacks. Each store is loaded once for both.
func BenchmarkFeed_Resume(b *testing.B) {
	const changes = 100
	for _, total := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("nodes=%d", total), func(b *testing.B) {
			s := loadStore(b, total)
			mark := s.Vector()
			ws := make([]store.Write, changes)
			for i := range ws {
				// Rewrite existing nodes (applyGenerated's paths).
				k := i * 7
				ws[i] = store.Write{Path: fmt.Sprintf("/bench/d%04d/f%07d", k/1000, k), Data: []byte("changed")}
			}
			if _, err := s.Write(context.Background(), ws); err != nil {
				b.Fatal(err)
			}
			if st := s.Stats(); st.Nodes != uint64(total) {
				b.Fatalf("after the changes the store holds %d nodes, want %d: they were not rewrites", st.Nodes, total)
			}
			b.Run("feed", func(b *testing.B) {
				for range b.N {
					f, err := s.Feed(store.FeedOptions{Prefixes: []string{"/bench"}, From: mark})
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for {
						page, err := f.Next(context.Background())
						if err != nil {
							b.Fatal(err)
						}
						n += len(page.Nodes)
						if page.Caught {
							break
						}
					}
					f.Close()
					if n != changes {
						b.Fatalf("resume replayed %d nodes, want %d", n, changes)
					}
				}
			})
			b.Run("scan", func(b *testing.B) {
				for range b.N {
					n, after := 0, ""
					for {
						nodes, next, err := s.Scan(store.ScanOptions{
							Prefix: "/bench", After: after,
							Keep: func(_ string, m store.Meta) bool { return !mark.Covers(m.Origin, m.Seq) },
						})
						if err != nil {
							b.Fatal(err)
						}
						n += len(nodes)
						if next == "" {
							break
						}
						after = next
					}
					if n != changes {
						b.Fatalf("scan found %d nodes, want %d", n, changes)
					}
				}
			})
		})
	}
}

// BenchmarkStore_Bucket reads hash-tree leaf buckets of stores of 100k and
// 1M nodes, as a repair does for every bucket that differs.
func BenchmarkStore_Bucket(b *testing.B) {
	for _, total := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("nodes=%d", total), func(b *testing.B) {
			s := loadStore(b, total)
			b.ResetTimer()
			n := 0
			for i := range b.N {
				nodes, err := s.Bucket(i * 7919 % store.TreeLeaves)
				if err != nil {
					b.Fatal(err)
				}
				n += len(nodes)
			}
			b.ReportMetric(float64(n)/float64(b.N), "nodes/op")
		})
	}
}

// BenchmarkStore_Open opens a store of 1M nodes: reading every node's
// metadata from bbolt into the radix tree, the hash tree and the bucket
// index.
func BenchmarkStore_Open(b *testing.B) {
	path := b.TempDir() + "/store.db"
	s := loadStoreAt(b, path, 1000000)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		cfg := store.DefaultConfig(path)
		cfg.Logger = discard
		s, err := store.Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
