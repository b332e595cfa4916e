package backup_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"filippo.io/age"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/store"
)

const (
	benchNodes    = 100_000
	benchNodeSize = 1 << 10
)

// benchData returns the benchmark's nodes: 1 KiB of random lowercase
// text each (compressible about as much as configuration files are), in
// path order.
func benchData() []store.Node {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := make([]store.Node, benchNodes)
	for i := range nodes {
		data := make([]byte, benchNodeSize)
		for j := range data {
			data[j] = 'a' + byte(rng.IntN(26))
		}
		nodes[i] = store.Node{
			Path: fmt.Sprintf("/bench/%06d", i),
			Meta: store.Meta{Version: uint64(i + 1), Origin: 1, Seq: uint64(i + 1), Size: benchNodeSize},
			Data: data,
		}
	}
	return nodes
}

func benchWrite(b *testing.B, tg target.Target, nodes []store.Node, recipients []string) backup.Manifest {
	ctx := context.Background()
	w, err := backup.NewWriter(ctx, tg, backup.WriterOptions{Job: "bench", Kind: backup.KindFull, Prefix: "/", Recipients: recipients})
	if err != nil {
		b.Fatal(err)
	}
	root := backup.NewRoot()
	for _, n := range nodes {
		if err := w.Add(n); err != nil {
			b.Fatal(err)
		}
		root.Add(n.Path, n.Version, n.Origin, n.Seq)
	}
	m, err := w.Commit(ctx, store.Vector{1: benchNodes}, root.Sum(), "")
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkWrite writes 100k nodes of 1 KiB to a file:// target.
func BenchmarkWrite(b *testing.B) {
	for _, enc := range []bool{false, true} {
		b.Run(fmt.Sprintf("encrypted=%v", enc), func(b *testing.B) {
			nodes := benchData()
			var recipients []string
			if enc {
				id, _ := age.GenerateX25519Identity()
				recipients = []string{id.Recipient().String()}
			}
			b.SetBytes(benchNodes * benchNodeSize)
			b.ResetTimer()
			var stored uint64
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				tg, err := target.OpenDir(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				stored = benchWrite(b, tg, nodes, recipients).Stored
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(stored)/(benchNodes*benchNodeSize), "stored/raw")
		})
	}
}

// BenchmarkRebuild reads back 100k nodes of 1 KiB from a file:// target.
func BenchmarkRebuild(b *testing.B) {
	for _, enc := range []bool{false, true} {
		b.Run(fmt.Sprintf("encrypted=%v", enc), func(b *testing.B) {
			tg := newDir(b)
			var opts backup.ReadOptions
			var recipients []string
			if enc {
				id, _ := age.GenerateX25519Identity()
				recipients = []string{id.Recipient().String()}
				opts.Identities = []age.Identity{id}
			}
			m := benchWrite(b, tg, benchData(), recipients)
			b.SetBytes(benchNodes * benchNodeSize)
			b.ResetTimer()
			for range b.N {
				n := 0
				err := backup.Rebuild(context.Background(), tg, []backup.Manifest{m}, opts, func(store.Node) error {
					n++
					return nil
				})
				if err != nil || n != benchNodes {
					b.Fatalf("Rebuild = %d nodes, %v", n, err)
				}
			}
		})
	}
}
