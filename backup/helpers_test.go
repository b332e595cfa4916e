package backup_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/store"
)

// t0 is the clock of the tests' first backup.
var t0 = time.Date(2026, 12, 2, 17, 0, 0, 0, time.UTC)

func newDir(t testing.TB) *target.Dir {
	t.Helper()
	d, err := target.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func node(path string, version uint64, data string) store.Node {
	return store.Node{
		Path: path,
		Meta: store.Meta{Version: version, Origin: 7, Seq: version, Size: uint32(len(data))},
		Data: []byte(data),
	}
}

func tomb(path string, version uint64) store.Node {
	return store.Node{Path: path, Meta: store.Meta{Version: version, Origin: 7, Seq: version, Deleted: true}}
}

// state is a model of a store: path -> newest node.
type state map[string]store.Node

func (s state) apply(nodes []store.Node) {
	for _, n := range nodes {
		s[n.Path] = n
	}
}

func (s state) clone() state { return maps.Clone(s) }

// root computes the content root of the model's live nodes.
func (s state) root(t testing.TB) string {
	t.Helper()
	r := backup.NewRoot()
	for _, p := range slices.Sorted(maps.Keys(s)) {
		if n := s[p]; !n.Deleted {
			if err := r.Add(n.Path, n.Version, n.Origin, n.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	return r.Sum()
}

// write writes one backup of nodes and commits it with root.
func write(t testing.TB, tg target.Target, opts backup.WriterOptions, nodes []store.Node, root string) backup.Manifest {
	t.Helper()
	ctx := context.Background()
	if opts.Job == "" {
		opts.Job = "nightly"
	}
	if opts.Prefix == "" {
		opts.Prefix = "/"
	}
	w, err := backup.NewWriter(ctx, tg, opts)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, n := range nodes {
		if err := w.Add(n); err != nil {
			w.Abort(ctx)
			t.Fatalf("Add(%s): %v", n.Path, err)
		}
	}
	m, err := w.Commit(ctx, store.Vector{7: uint64(len(nodes))}, root, "test")
	if err != nil {
		w.Abort(ctx)
		t.Fatalf("Commit: %v", err)
	}
	return m
}

// rebuild returns the state a chain rebuilds to, checking the order.
func rebuild(t testing.TB, tg target.Target, chain []backup.Manifest, opts backup.ReadOptions) (state, error) {
	t.Helper()
	got := state{}
	var last string
	err := backup.Rebuild(context.Background(), tg, chain, opts, func(n store.Node) error {
		if last != "" && n.Path <= last {
			return fmt.Errorf("Rebuild yielded %s after %s", n.Path, last)
		}
		last = n.Path
		got[n.Path] = n
		return nil
	})
	return got, err
}

func equalState(t testing.TB, got, want state) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("Rebuild: %s missing", p)
			continue
		}
		if g.Meta != w.Meta || string(g.Data) != string(w.Data) {
			t.Errorf("Rebuild: %s = %+v %q, want %+v %q", p, g.Meta, g.Data, w.Meta, w.Data)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("Rebuild: unexpected %s", p)
		}
	}
}

func keys(t testing.TB, tg target.Target) []string {
	t.Helper()
	var out []string
	if err := tg.List(context.Background(), "", func(in target.Info) error {
		out = append(out, in.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s error = %v, want %v", what, err, want)
	}
}
