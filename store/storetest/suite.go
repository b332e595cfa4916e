package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/nodepath/nodepathtest"
	"github.com/replds/replds/store"
)

// Run runs the conformance suite against the stores open returns. Each
// subtest opens its own stores in its own temporary directory.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"WriteGet", testWriteGet},
		{"Walk", testWalk},
		{"Scan", testScan},
		{"Snapshot", testSnapshot},
		{"Changes", testChanges},
		{"Versions", testVersions},
		{"ClockSkew", testClockSkew},
		{"PathAheadOfClock", testPathAheadOfClock},
		{"Reincarnate", testReincarnate},
		{"DenseSeqs", testDenseSeqs},
		{"IdenticalNoop", testIdenticalNoop},
		{"Delete", testDelete},
		{"Conflicts", testConflicts},
		{"InvalidPaths", testInvalidPaths},
		{"Limits", testLimits},
		{"Reopen", testReopen},
		{"HashTree", testHashTree},
		{"Buckets", testBuckets},
		{"ApplyConverges", testApplyConverges},
		{"ApplyLWW", testApplyLWW},
		{"ApplyInvalid", testApplyInvalid},
		{"Vector", testVector},
		{"Subscribe", testSubscribe},
		{"Overflow", testOverflow},
		{"Feed", testFeed},
		{"FeedOverflow", testFeedOverflow},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Close", testClose},
		{"CloseWhileWriting", testCloseWhileWriting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func testWriteGet(t *testing.T, open Opener) {
	e := newEnv(t, open)
	if e.s.Origin() == 0 {
		t.Fatalf("Origin() = 0")
	}
	got := e.put("/a/b", "one", "/a/c", "", "/d", "three")
	if len(got) != 3 {
		t.Fatalf("Write returned %d nodes, want 3", len(got))
	}
	for i, want := range []string{"/a/b", "/a/c", "/d"} {
		n := got[i]
		if n.Path != want || n.Data != nil || n.Origin != e.s.Origin() || n.Deleted {
			t.Errorf("Write result[%d] = %+v, want metadata of %q", i, n, want)
		}
	}
	for _, tt := range []struct{ path, data string }{{"/a/b", "one"}, {"/a/c", ""}, {"/d", "three"}} {
		n := e.mustGet(tt.path)
		if string(n.Data) != tt.data || n.Size != uint32(len(tt.data)) {
			t.Errorf("Get(%q) = %q (size %d), want %q", tt.path, n.Data, n.Size, tt.data)
		}
		m, ok := e.s.Lookup(tt.path)
		if !ok || m != n.Meta {
			t.Errorf("Lookup(%q) = %+v, %v, want %+v", tt.path, m, ok, n.Meta)
		}
	}
	// The store owns copies: changing what was written or read changes
	// nothing inside.
	buf := []byte("mine")
	e.write(store.Write{Path: "/e", Data: buf})
	buf[0] = 'X'
	n := e.mustGet("/e")
	n.Data[1] = 'X'
	if got := e.mustGet("/e"); string(got.Data) != "mine" {
		t.Errorf("Get(/e) = %q after the caller changed its slices, want %q", got.Data, "mine")
	}

	for _, p := range []string{"/missing", "/a", "/a/b/c"} {
		if _, err := e.s.Get(p); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", p, err)
		}
	}
	if _, ok := e.s.Lookup("/a"); ok {
		t.Errorf("Lookup(/a) found a directory")
	}
	if _, err := e.s.Get("a/b"); !errors.Is(err, store.ErrInvalidPath) {
		t.Errorf("Get(a/b) = %v, want ErrInvalidPath", err)
	}
	if got, want := e.s.Stats(), (store.Stats{Nodes: 4, Bytes: 12}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if got, err := e.s.Write(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("Write(nil) = %v, %v, want nothing", got, err)
	}
}

func paths(nodes []store.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Path
	}
	return out
}

func testWalk(t *testing.T, open Opener) {
	e := newEnv(t, open)
	e.put("/a/b/c", "2", "/a/bc", "3", "/a/b-x", "4", "/a/b/d/e", "5", "/z", "6")
	e.write(store.Write{Path: "/a/b/d/e", Delete: true})
	// Only replication can make /a/b a leaf and a directory at once.
	e.apply([]store.Node{{Path: "/a/b", Meta: store.Meta{Version: 1, Origin: 9, Seq: 1}, Data: []byte("1")}})
	tests := []struct {
		prefix string
		want   []string
	}{
		{"/", []string{"/a/b", "/a/b-x", "/a/b/c", "/a/b/d/e", "/a/bc", "/z"}},
		{"/a/b", []string{"/a/b", "/a/b/c", "/a/b/d/e"}},
		{"/a/b/d", []string{"/a/b/d/e"}},
		{"/a/bc", []string{"/a/bc"}},
		{"/a/x", nil},
		{"/q", nil},
		{"a", nil},
		{"/a/", nil},
	}
	for _, tt := range tests {
		got := paths(walk(e.s, tt.prefix))
		if !slices.Equal(got, tt.want) {
			t.Errorf("Walk(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
	var seen []string
	e.s.Walk("/", func(path string, m store.Meta) bool {
		seen = append(seen, path)
		return len(seen) < 2
	})
	if len(seen) != 2 {
		t.Errorf("Walk visited %q after fn returned false, want 2 paths", seen)
	}
	if m, ok := e.s.Lookup("/a/b/d/e"); !ok || !m.Deleted {
		t.Errorf("Lookup(tombstone) = %+v, %v, want deleted", m, ok)
	}
}

func testScan(t *testing.T, open Opener) {
	e := newEnv(t, open)
	var want []string
	for i := range 25 {
		p := fmt.Sprintf("/p/%02d", i)
		want = append(want, p)
		e.put(p, strings.Repeat("x", i))
	}
	e.put("/p-sibling", "s", "/q/1", "q", "/o", "o")
	e.apply([]store.Node{{Path: "/p", Meta: store.Meta{Version: 1, Origin: 9, Seq: 1, Deleted: true}}})
	want = append([]string{"/p"}, want...)

	scanAll := func(opts store.ScanOptions) ([]store.Node, int) {
		t.Helper()
		var all []store.Node
		pages := 0
		for {
			page, next, err := e.s.Scan(opts)
			if err != nil {
				t.Fatalf("Scan(%+v) = %v", opts, err)
			}
			pages++
			all = append(all, page...)
			if next == "" {
				return all, pages
			}
			if len(page) == 0 || next != page[len(page)-1].Path {
				t.Fatalf("Scan page %q: next = %q, want its last path", paths(page), next)
			}
			if pages > 100 {
				t.Fatalf("Scan does not end")
			}
			opts.After = next
		}
	}
	tests := []struct {
		name      string
		opts      store.ScanOptions
		want      []string
		wantPages int
	}{
		{"all", store.ScanOptions{Prefix: "/p"}, want, 1},
		{"by count", store.ScanOptions{Prefix: "/p", MaxNodes: 7}, want, 4},
		{"by bytes", store.ScanOptions{Prefix: "/p", MaxBytes: 40}, want, 10},
		{"at least one", store.ScanOptions{Prefix: "/p", MaxBytes: 1}, want, 24},
		{"keep", store.ScanOptions{Prefix: "/", MaxNodes: 2, Keep: func(path string, m store.Meta) bool {
			return m.Size >= 20 || m.Deleted
		}}, []string{"/p", "/p/20", "/p/21", "/p/22", "/p/23", "/p/24"}, 3},
		{"after", store.ScanOptions{Prefix: "/p", After: "/p/21"}, want[23:], 1},
		{"after beyond", store.ScanOptions{Prefix: "/p", After: "/p/99"}, nil, 1},
		{"after before", store.ScanOptions{Prefix: "/p", After: "/a"}, want, 1},
		{"leaf", store.ScanOptions{Prefix: "/p/03"}, []string{"/p/03"}, 1},
		{"empty", store.ScanOptions{Prefix: "/nothing"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := scanAll(tt.opts)
			if !slices.Equal(paths(got), tt.want) {
				t.Fatalf("Scan(%+v) = %q, want %q", tt.opts, paths(got), tt.want)
			}
			if pages != tt.wantPages {
				t.Errorf("Scan(%+v) took %d pages, want %d", tt.opts, pages, tt.wantPages)
			}
			for _, n := range got {
				m, _ := e.s.Lookup(n.Path)
				if n.Meta != m || len(n.Data) != int(m.Size) || (m.Deleted && n.Data != nil) {
					t.Errorf("Scan node %q = %+v with %d bytes, Lookup %+v", n.Path, n.Meta, len(n.Data), m)
				}
			}
		})
	}
	if _, _, err := e.s.Scan(store.ScanOptions{Prefix: "p"}); !errors.Is(err, store.ErrInvalidPath) {
		t.Errorf("Scan(Prefix p) = %v, want ErrInvalidPath", err)
	}
}

// readSnapshot reads a whole snapshot of prefix in pages of 3 nodes; during
// calls fn after the first page.
func readSnapshot(t *testing.T, s Store, prefix string, during func()) (store.Vector, []store.Node) {
	t.Helper()
	var vec store.Vector
	var nodes []store.Node
	pages := 0
	err := s.Snapshot(context.Background(), store.ScanOptions{Prefix: prefix, MaxNodes: 3}, func(v store.Vector, page []store.Node) error {
		if pages > 0 && !maps.Equal(v, vec) {
			t.Errorf("Snapshot page %d vector %v, first page %v", pages, v, vec)
		}
		vec = v
		pages++
		nodes = append(nodes, page...)
		if pages == 1 && during != nil {
			during()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Snapshot(%s) = %v", prefix, err)
	}
	return vec, nodes
}

func testSnapshot(t *testing.T, open Opener) {
	e := newEnv(t, open)
	if vec, nodes := readSnapshot(t, e.s, "/", nil); len(vec) != 0 || len(nodes) != 0 {
		t.Errorf("empty store: Snapshot = %v, %d nodes; want an empty vector and no nodes", vec, len(nodes))
	}
	for i := range 10 {
		e.put(fmt.Sprintf("/s/%02d", i), fmt.Sprint(i))
	}
	e.write(del("/s/03"))
	e.put("/t", "outside")
	e.apply([]store.Node{{Path: "/s/remote", Meta: store.Meta{Version: 1, Origin: 9, Seq: 1}, Data: []byte("r")}})
	wantVec := e.s.Vector()
	want := walkData(t, e.s, "/s")

	// Writes committed while the snapshot runs do not leak into it: not
	// into its nodes, not into its vector.
	gotVec, got := readSnapshot(t, e.s, "/s", func() {
		// The writes run on a goroutine of their own (the snapshot holds
		// its transaction here); their error comes back on errs.
		errs := make(chan error, 1)
		go func() {
			ctx := context.Background()
			_, err := e.s.Write(ctx, []store.Write{put("/s/09", "new"), put("/s/99", "new")})
			if err == nil {
				_, err = e.s.Write(ctx, []store.Write{del("/s/08")})
			}
			if err == nil {
				_, err = e.s.Apply(ctx, []store.Node{{Path: "/s/00", Meta: store.Meta{Version: ^uint64(0) >> 1, Origin: 9, Seq: 2}, Data: []byte("r2")}}, nil)
			}
			errs <- err
		}()
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("writing during a snapshot: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("writes blocked by a snapshot")
		}
	})
	if !maps.Equal(gotVec, wantVec) {
		t.Errorf("Snapshot vector = %v, want %v", gotVec, wantVec)
	}
	if !slices.EqualFunc(got, want, nodeEqual) {
		t.Errorf("Snapshot nodes = %v, want %v", got, want)
	}
	gotVec, got = readSnapshot(t, e.s, "/s", nil)
	if !maps.Equal(gotVec, e.s.Vector()) || !slices.EqualFunc(got, walkData(t, e.s, "/s"), nodeEqual) {
		t.Errorf("Snapshot after the writes = %v, %v; want the store's state", gotVec, got)
	}

	// A prefix with nothing under it still gives the vector, in one call.
	calls := 0
	err := e.s.Snapshot(context.Background(), store.ScanOptions{Prefix: "/none"}, func(v store.Vector, page []store.Node) error {
		calls++
		if !maps.Equal(v, e.s.Vector()) || len(page) != 0 {
			t.Errorf("Snapshot(/none) gave vector %v and %d nodes, want %v and none", v, len(page), e.s.Vector())
		}
		return nil
	})
	if err != nil || calls != 1 {
		t.Errorf("Snapshot(/none) = %v after %d calls, want nil after 1", err, calls)
	}

	err = e.s.Snapshot(context.Background(), store.ScanOptions{Prefix: "bad"}, func(store.Vector, []store.Node) error { return nil })
	if !errors.Is(err, store.ErrInvalidPath) {
		t.Errorf("Snapshot(bad prefix) = %v, want ErrInvalidPath", err)
	}
	stop := errors.New("stop")
	if err := e.s.Snapshot(context.Background(), store.ScanOptions{Prefix: "/s", MaxNodes: 1}, func(store.Vector, []store.Node) error { return stop }); err != stop {
		t.Errorf("Snapshot with failing fn = %v, want its error", err)
	}
}

// walkData returns every node under prefix, tombstones included, with its
// data, in path order.
func walkData(t *testing.T, s Store, prefix string) []store.Node {
	t.Helper()
	var out []store.Node
	for _, n := range walk(s, prefix) {
		if !n.Deleted {
			full, err := s.Get(n.Path)
			if err != nil {
				t.Fatalf("Get(%q) = %v", n.Path, err)
			}
			n = full
		}
		out = append(out, n)
	}
	return out
}

// nodeEqual compares nodes, data included.
func nodeEqual(a, b store.Node) bool {
	return a.Path == b.Path && a.Meta == b.Meta && bytes.Equal(a.Data, b.Data)
}

func testChanges(t *testing.T, open Opener) {
	e := newEnv(t, open)
	o := e.s.Origin()
	for i := range 10 {
		e.put(fmt.Sprintf("/n/%d", i), strings.Repeat("d", 10))
	}
	// Superseded writes leave the log: /n/2 moves to seq 11, /n/5 to 12.
	e.put("/n/2", "new")
	e.write(store.Write{Path: "/n/5", Delete: true})
	wantSeqs := []uint64{1, 2, 4, 5, 7, 8, 9, 10, 11, 12}

	collect := func(after uint64, maxNodes, maxBytes int) ([]uint64, int) {
		t.Helper()
		var seqs []uint64
		pages := 0
		for {
			nodes, last, more, err := e.s.Changes(o, after, maxNodes, maxBytes)
			if err != nil {
				t.Fatalf("Changes(%d) = %v", after, err)
			}
			pages++
			for _, n := range nodes {
				m, _ := e.s.Lookup(n.Path)
				if n.Meta != m || n.Origin != o || len(n.Data) != int(m.Size) {
					t.Errorf("Changes node %q = %+v, Lookup %+v", n.Path, n.Meta, m)
				}
				seqs = append(seqs, n.Seq)
			}
			if len(nodes) > 0 && last != nodes[len(nodes)-1].Seq {
				t.Errorf("Changes last = %d, want %d", last, nodes[len(nodes)-1].Seq)
			}
			if !more {
				return seqs, pages
			}
			after = last
		}
	}
	tests := []struct {
		after              uint64
		maxNodes, maxBytes int
		want               []uint64
		wantPages          int
	}{
		{0, 0, 0, wantSeqs, 1},
		{0, 3, 0, wantSeqs, 4},
		{0, 0, 25, wantSeqs, 4},
		{0, 0, 1, wantSeqs, 10},
		{8, 0, 0, wantSeqs[6:], 1},
		{12, 0, 0, nil, 1},
	}
	for _, tt := range tests {
		got, pages := collect(tt.after, tt.maxNodes, tt.maxBytes)
		if !slices.Equal(got, tt.want) || pages != tt.wantPages {
			t.Errorf("Changes(after %d, %d nodes, %d bytes) = %v in %d pages, want %v in %d", tt.after, tt.maxNodes, tt.maxBytes, got, pages, tt.want, tt.wantPages)
		}
	}
	nodes, last, more, err := e.s.Changes(o+1, 0, 0, 0)
	if err != nil || len(nodes) != 0 || last != 0 || more {
		t.Errorf("Changes(unknown origin) = %v, %d, %v, %v; want nothing", nodes, last, more, err)
	}
	if n, _, _, _ := e.s.Changes(o, 10, 0, 0); len(n) != 2 || string(n[0].Data) != "new" || !n[1].Deleted {
		t.Errorf("Changes(after 10) = %+v, want /n/2 with data and the /n/5 tombstone", n)
	}
}

func testVersions(t *testing.T, open Opener) {
	e := newEnv(t, open)
	var last, lastA uint64
	for i := range 20 {
		// The clock wobbles and goes back, but less than MaxClockOffset.
		e.clock.Add(time.Duration((i%3)-1) * 7 * time.Second)
		got := e.put("/a", fmt.Sprint(i), fmt.Sprintf("/b/%d", i), "x")
		for _, n := range got {
			if n.Version <= last {
				t.Fatalf("write %d: version %d not above the previous %d", i, n.Version, last)
			}
			last = n.Version
		}
		if got[0].Version <= lastA {
			t.Fatalf("write %d: /a version %d not above %d", i, got[0].Version, lastA)
		}
		lastA = got[0].Version
	}
	// Versions are HLC values: at least the wall clock in the top 48 bits.
	e.clock.Add(time.Hour)
	n := e.put("/c", "x")[0]
	if wall := uint64(e.clock.Now().UnixMilli()) << 16; n.Version < wall {
		t.Errorf("version %d below the clock %d", n.Version, wall)
	}
	// A remote node far ahead on another path does not drag local writes
	// beyond MaxClockOffset...
	ahead := uint64(e.clock.Now().Add(time.Hour).UnixMilli()) << 16
	e.apply([]store.Node{{Path: "/far", Meta: store.Meta{Version: ahead, Origin: 7, Seq: 1}, Data: []byte("x")}})
	if n := e.put("/c", "y")[0]; n.Version >= ahead {
		t.Errorf("version %d absorbed a remote clock an hour ahead", n.Version)
	}
	// ...but one closer is absorbed.
	near := uint64(e.clock.Now().Add(30*time.Second).UnixMilli()) << 16
	e.apply([]store.Node{{Path: "/near", Meta: store.Meta{Version: near, Origin: 7, Seq: 2}, Data: []byte("x")}})
	if n := e.put("/c", "z")[0]; n.Version <= near {
		t.Errorf("version %d not above absorbed %d", n.Version, near)
	}
	// Versions survive a restart with the clock set back.
	e.reopen()
	e.clock.Add(-20 * time.Second)
	if n := e.put("/d", "x")[0]; n.Version <= near {
		t.Errorf("after reopen: version %d not above %d", n.Version, near)
	}
}

func testClockSkew(t *testing.T, open Opener) {
	e := newEnv(t, open)
	before := e.put("/a", "1")[0]
	e.clock.Add(-2 * store.MaxClockOffset)
	_, err := e.s.Write(context.Background(), []store.Write{{Path: "/b", Data: []byte("2")}})
	if !errors.Is(err, store.ErrClockSkew) {
		t.Fatalf("Write with the clock set back by %v = %v, want ErrClockSkew", 2*store.MaxClockOffset, err)
	}
	if _, ok := e.s.Lookup("/b"); ok {
		t.Errorf("refused write stored")
	}
	e.clock.Add(2 * store.MaxClockOffset)
	after := e.put("/b", "2")[0]
	if after.Version <= before.Version || after.Seq != before.Seq+1 {
		t.Errorf("write after the clock recovered = %+v, want above %+v with the next seq", after.Meta, before.Meta)
	}
}

func testPathAheadOfClock(t *testing.T, open Opener) {
	e := newEnv(t, open)
	// A skewed peer wrote /a ten minutes in the future.
	future := store.Node{Path: "/a", Meta: store.Meta{Version: uint64(e.clock.Now().Add(10*time.Minute).UnixMilli()) << 16, Origin: 7, Seq: 1, Size: 1}, Data: []byte("f")}
	if _, err := e.s.Apply(context.Background(), []store.Node{future}, nil); err != nil {
		t.Fatal(err)
	}
	// A local write of /a still wins, just above it; other paths keep
	// versions from the local clock.
	a := e.put("/a", "local")[0]
	if a.Version != future.Version+1 {
		t.Errorf("write over a future version: version %d, want %d", a.Version, future.Version+1)
	}
	b := e.put("/b", "x")[0]
	if b.Version >= future.Version {
		t.Errorf("write of another path: version %d dragged to the future (%d)", b.Version, future.Version)
	}
}

func testReincarnate(t *testing.T, open Opener) {
	e := newEnv(t, open)
	a := e.put("/a", "1", "/b", "2")
	old, cur, err := e.s.Reincarnate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if old != a[0].Origin || cur == old || e.s.Origin() != cur {
		t.Fatalf("Reincarnate = %x, %x; Origin() = %x; want old %x and a new one", old, cur, e.s.Origin(), a[0].Origin)
	}
	// New writes start a new sequence; the old origin's writes are now
	// foreign: one the store lacked (a restore lost it) is applied.
	if c := e.put("/c", "3")[0]; c.Origin != cur || c.Seq != 1 {
		t.Errorf("write after Reincarnate = origin %x seq %d, want %x seq 1", c.Origin, c.Seq, cur)
	}
	lost := store.Node{Path: "/lost", Meta: store.Meta{Version: a[1].Version + 1, Origin: old, Seq: 3, Size: 1}, Data: []byte("l")}
	if n, err := e.s.Apply(context.Background(), []store.Node{lost}, nil); err != nil || n != 1 {
		t.Errorf("Apply of a write of the old origin = %d, %v; want it applied", n, err)
	}
	if v := e.s.Vector(); v[old] != 3 || v[cur] != 1 {
		t.Errorf("vector = %v, want %x:3 and %x:1", v, old, cur)
	}
	e.reopen()
	if e.s.Origin() != cur {
		t.Errorf("after reopen, origin %x, want %x", e.s.Origin(), cur)
	}
}

func testDenseSeqs(t *testing.T, open Opener) {
	e := newEnv(t, open)
	var seqs []uint64
	for i := range 5 {
		for _, n := range e.put(fmt.Sprintf("/x/%d", i), "a", fmt.Sprintf("/y/%d", i), "b") {
			seqs = append(seqs, n.Seq)
		}
		e.put(fmt.Sprintf("/x/%d", i), "a") // no-op: no seq
		for _, n := range e.write(store.Write{Path: fmt.Sprintf("/y/%d", i), Delete: true}) {
			seqs = append(seqs, n.Seq)
		}
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs = %v, want 1..%d", seqs, len(seqs))
		}
	}
	if got := e.s.Vector()[e.s.Origin()]; got != uint64(len(seqs)) {
		t.Errorf("Vector()[own] = %d, want %d", got, len(seqs))
	}
}

func testIdenticalNoop(t *testing.T, open Opener) {
	e := newEnv(t, open)
	first := e.put("/a", "same", "/b", "x")
	root, vec := e.s.Root(), e.s.Vector()
	sub := e.subscribe(t, 10)
	if got := e.put("/a", "same"); got != nil {
		t.Errorf("rewriting identical data = %+v, want no change", got)
	}
	if got := e.put("/a", "same", "/b", "y"); len(got) != 1 || got[0].Path != "/b" {
		t.Errorf("batch with one identical write = %+v, want only /b", got)
	}
	if m, _ := e.s.Lookup("/a"); m != first[0].Meta {
		t.Errorf("Lookup(/a) = %+v after identical write, want %+v", m, first[0].Meta)
	}
	if got := e.put("/a", "diff"); len(got) != 1 || got[0].Version <= first[0].Version {
		t.Errorf("different data = %+v, want a new version", got)
	}
	if e.s.Root() == root || maps.Equal(e.s.Vector(), vec) {
		t.Errorf("root or vector did not change with the data")
	}
	// Empty data over a tombstone is a change.
	e.write(store.Write{Path: "/b", Delete: true})
	if got := e.put("/b", ""); len(got) != 1 {
		t.Errorf("empty data over a tombstone = %+v, want a change", got)
	}
	if got := e.put("/b", ""); got != nil {
		t.Errorf("empty data over empty data = %+v, want no change", got)
	}
	evs := sub.drain(t, 4)
	if len(evs) != 4 {
		t.Errorf("got %d events, want one per changing write (4)", len(evs))
	}
}

func testDelete(t *testing.T, open Opener) {
	e := newEnv(t, open)
	e.put("/a/b", "1", "/a/c/d", "2", "/a/c/e", "3", "/ab", "4", "/f", "5")
	if got := e.write(store.Write{Path: "/missing", Delete: true}); got != nil {
		t.Errorf("delete of a missing path = %+v, want no change", got)
	}
	_, err := e.s.Write(context.Background(), []store.Write{{Path: "/a/c", Delete: true}})
	if !errors.Is(err, store.ErrIsDir) || !strings.Contains(err.Error(), "/a/c/") {
		t.Errorf("delete of a directory = %v, want ErrIsDir naming a child", err)
	}
	got := e.write(store.Write{Path: "/f", Delete: true})
	if len(got) != 1 || !got[0].Deleted || got[0].Size != 0 {
		t.Fatalf("delete /f = %+v, want one tombstone", got)
	}
	if _, err := e.s.Get("/f"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
	}
	if got := e.write(store.Write{Path: "/f", Delete: true}); got != nil {
		t.Errorf("second delete = %+v, want no change", got)
	}
	got = e.write(store.Write{Path: "/a", Delete: true, Recursive: true})
	if want := []string{"/a/b", "/a/c/d", "/a/c/e"}; !slices.Equal(paths(got), want) {
		t.Errorf("recursive delete of /a = %q, want %q", paths(got), want)
	}
	for _, n := range got {
		if !n.Deleted {
			t.Errorf("recursive delete: %+v not a tombstone", n)
		}
	}
	if _, err := e.s.Get("/ab"); err != nil {
		t.Errorf("recursive delete of /a took /ab: %v", err)
	}
	if got := e.write(store.Write{Path: "/ab", Delete: true, Recursive: true}); len(got) != 1 {
		t.Errorf("recursive delete of a leaf = %+v, want the leaf", got)
	}
	if got := e.write(store.Write{Path: "/a", Delete: true, Recursive: true}); got != nil {
		t.Errorf("recursive delete of tombstones = %+v, want no change", got)
	}
	if got, want := e.s.Stats(), (store.Stats{Tombstones: 5}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	// A deleted directory can become a leaf, and a deleted leaf a directory.
	e.put("/a", "leaf", "/f/g", "dir")
}

func testConflicts(t *testing.T, open Opener) {
	tests := []struct {
		name   string
		before []store.Write
		batch  []store.Write
		// names lists both paths the error must name; none means success.
		names []string
	}{
		{"under leaf", []store.Write{put("/a", "x")}, []store.Write{put("/a/b", "y")}, []string{"/a", "/a/b"}},
		{"deep under leaf", []store.Write{put("/a", "x")}, []store.Write{put("/a/b/c/d", "y")}, []string{"/a", "/a/b/c/d"}},
		{"leaf over dir", []store.Write{put("/a/b/c", "x")}, []store.Write{put("/a", "y")}, []string{"/a", "/a/b/c"}},
		{"in batch, leaf first", nil, []store.Write{put("/a", "x"), put("/a/b", "y")}, []string{"/a", "/a/b"}},
		{"in batch, dir first", nil, []store.Write{put("/a/b", "y"), put("/a", "x")}, []string{"/a", "/a/b"}},
		{"sibling prefix", []store.Write{put("/a", "x")}, []store.Write{put("/ab/c", "y")}, nil},
		{"leaf deleted in batch", []store.Write{put("/a", "x")}, []store.Write{del("/a"), put("/a/b", "y")}, nil},
		{"leaf deleted after, in batch", []store.Write{put("/a", "x")}, []store.Write{put("/a/b", "y"), del("/a")}, nil},
		{"dir emptied in batch", []store.Write{put("/a/b/c", "x")}, []store.Write{delR("/a/b"), put("/a", "y")}, nil},
		{"tombstone parent", []store.Write{put("/a", "x"), del("/a")}, []store.Write{put("/a/b", "y")}, nil},
		{"rewrite leaf", []store.Write{put("/a", "x")}, []store.Write{put("/a", "y")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, open)
			for _, w := range tt.before {
				e.write(w)
			}
			root := e.s.Root()
			_, err := e.s.Write(context.Background(), tt.batch)
			if tt.names == nil {
				if err != nil {
					t.Fatalf("Write(%s) = %v, want success", describe(tt.batch), err)
				}
				return
			}
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Write(%s) = %v, want ErrConflict", describe(tt.batch), err)
			}
			for _, p := range tt.names {
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", p)) {
					t.Errorf("error %q does not name %q", err, p)
				}
			}
			if e.s.Root() != root {
				t.Errorf("refused batch changed the store")
			}
		})
	}
}

func put(path, data string) store.Write { return store.Write{Path: path, Data: []byte(data)} }
func del(path string) store.Write       { return store.Write{Path: path, Delete: true} }
func delR(path string) store.Write {
	return store.Write{Path: path, Delete: true, Recursive: true}
}

func testInvalidPaths(t *testing.T, open Opener) {
	e := newEnv(t, open)
	for _, tt := range nodepathtest.InvalidPaths {
		t.Run(tt.Name, func(t *testing.T) {
			for _, w := range []store.Write{put(tt.Path, "x"), del(tt.Path), delR(tt.Path)} {
				_, err := e.s.Write(context.Background(), []store.Write{put("/valid", "x"), w})
				if !errors.Is(err, store.ErrInvalidPath) || !strings.Contains(err.Error(), tt.Problem) {
					t.Errorf("Write(%q) = %v, want ErrInvalidPath naming %q", tt.Path, err, tt.Problem)
				}
			}
			if _, ok := e.s.Lookup("/valid"); ok {
				t.Errorf("batch with an invalid path was partly written")
			}
		})
	}
	if n := len(walk(e.s, "/")); n != 0 {
		t.Errorf("store holds %d nodes after invalid writes", n)
	}
	_, err := e.s.Write(context.Background(), []store.Write{put("/d", "1"), put("/d", "2")})
	if !errors.Is(err, store.ErrInvalidPath) || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("Write(duplicate path) = %v, want ErrInvalidPath naming the duplicate", err)
	}
}

func testLimits(t *testing.T, open Opener) {
	e := newEnv(t, open)
	many := make([]store.Write, MaxBatch+1)
	for i := range many {
		many[i] = put(fmt.Sprintf("/m/%d", i), "x")
	}
	big := strings.Repeat("b", MaxNodeSize/2)
	var heavy []store.Write
	for i := range MaxBatchBytes/len(big) + 1 {
		heavy = append(heavy, put(fmt.Sprintf("/h/%d", i), big))
	}
	tests := []struct {
		name  string
		batch []store.Write
		limit int
	}{
		{"node", []store.Write{put("/n", strings.Repeat("n", MaxNodeSize+1))}, MaxNodeSize},
		{"count", many, MaxBatch},
		{"bytes", heavy, MaxBatchBytes},
	}
	for _, tt := range tests {
		_, err := e.s.Write(context.Background(), tt.batch)
		if !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(tt.limit)) {
			t.Errorf("%s: Write = %v, want ErrTooLarge naming %d", tt.name, err, tt.limit)
		}
	}
	if n := len(walk(e.s, "/")); n != 0 {
		t.Errorf("store holds %d nodes after refused writes", n)
	}
	// Right at the limits is fine.
	e.write(many[:MaxBatch]...)
	e.put("/n", strings.Repeat("n", MaxNodeSize))
	e.write(heavy[:MaxBatchBytes/len(big)]...)
}

// snapshot is everything a reopen must restore.
type snapshot struct {
	origin uint64
	vector store.Vector
	root   store.Hash
	stats  store.Stats
	nodes  []store.Node
	data   map[string]string
}

func takeSnapshot(t *testing.T, s Store) snapshot {
	t.Helper()
	snap := snapshot{origin: s.Origin(), vector: s.Vector(), root: s.Root(), stats: s.Stats(), nodes: walk(s, "/"), data: map[string]string{}}
	for _, n := range snap.nodes {
		if !n.Deleted {
			got, err := s.Get(n.Path)
			if err != nil {
				t.Fatalf("Get(%q) = %v", n.Path, err)
			}
			snap.data[n.Path] = string(got.Data)
		}
	}
	return snap
}

func (a snapshot) diff(b snapshot) string {
	switch {
	case a.origin != b.origin:
		return fmt.Sprintf("origin %d, want %d", a.origin, b.origin)
	case !maps.Equal(a.vector, b.vector):
		return fmt.Sprintf("vector %v, want %v", a.vector, b.vector)
	case a.root != b.root:
		return fmt.Sprintf("root %x, want %x", a.root, b.root)
	case a.stats != b.stats:
		return fmt.Sprintf("stats %+v, want %+v", a.stats, b.stats)
	case !slices.EqualFunc(a.nodes, b.nodes, func(x, y store.Node) bool { return x.Path == y.Path && x.Meta == y.Meta }):
		return fmt.Sprintf("nodes %+v, want %+v", a.nodes, b.nodes)
	case !maps.Equal(a.data, b.data):
		return "data differs"
	}
	return ""
}

func testReopen(t *testing.T, open Opener) {
	e := newEnv(t, open)
	e.put("/a/b", "1", "/a/c", "2", "/d", "3")
	e.write(del("/a/c"))
	e.apply([]store.Node{
		{Path: "/r/1", Meta: store.Meta{Version: 100, Origin: 9, Seq: 1}, Data: []byte("remote")},
		{Path: "/r/2", Meta: store.Meta{Version: 100, Origin: 9, Seq: 2, Deleted: true}},
	}, store.Advance{Origin: 8, From: 0, To: 5})
	before := takeSnapshot(t, e.s)
	e.reopen()
	if d := takeSnapshot(t, e.s).diff(before); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
	if n := e.put("/e", "4")[0]; n.Seq != 5 {
		t.Errorf("first write after reopen has seq %d, want 5", n.Seq)
	}
	// Reopening a cleanly closed store twice in a row changes nothing either.
	before = takeSnapshot(t, e.s)
	e.reopen()
	e.reopen()
	if d := takeSnapshot(t, e.s).diff(before); d != "" {
		t.Fatalf("after two reopens: %s", d)
	}
}

func testHashTree(t *testing.T, open Opener) {
	e := newEnv(t, open)
	if e.s.Root() != (store.Hash{}) {
		t.Errorf("empty store has root %x", e.s.Root())
	}
	e.put("/a", "1", "/b/c", "2", "/b/d", "3")
	e.write(del("/b/c"))
	e.apply([]store.Node{{Path: "/z", Meta: store.Meta{Version: 5, Origin: 3, Seq: 1}, Data: []byte("z")}})

	// The root is the XOR of the node hashes; each bucket holds its nodes.
	var want store.Hash
	for _, n := range walk(e.s, "/") {
		h := NodeHash(n.Path, n.Meta)
		for i := range want {
			want[i] ^= h[i]
		}
		b := BucketOf(n.Path)
		if n.Deleted {
			n.Data = nil
		} else {
			n = e.mustGet(n.Path)
		}
		got, err := e.s.Bucket(b)
		if err != nil || !slices.ContainsFunc(got, func(o store.Node) bool { return nodeEqual(o, n) }) {
			t.Errorf("Bucket(%d) = %+v, %v; want it to hold %+v", b, got, err, n)
		}
	}
	if got := e.s.Root(); got != want {
		t.Errorf("Root() = %x, want XOR of node hashes %x", got, want)
	}
	// Every internal node is the XOR of its children, down to the leaves.
	var check func(level, index int, h store.Hash)
	check = func(level, index int, h store.Hash) {
		kids := e.s.TreeChildren(level, index)
		if len(kids) != store.TreeFanout {
			t.Fatalf("TreeChildren(%d, %d) has %d hashes", level, index, len(kids))
		}
		var x store.Hash
		for i, k := range kids {
			for j := range x {
				x[j] ^= k[j]
			}
			if k != (store.Hash{}) && level+1 < store.TreeDepth {
				check(level+1, index*store.TreeFanout+i, k)
			}
		}
		if x != h {
			t.Errorf("TreeChildren(%d, %d) XOR to %x, parent %x", level, index, x, h)
		}
	}
	check(0, 0, want)
	for _, bad := range [][2]int{{-1, 0}, {store.TreeDepth, 0}, {1, store.TreeFanout}, {0, 1}} {
		if got := e.s.TreeChildren(bad[0], bad[1]); got != nil {
			t.Errorf("TreeChildren(%d, %d) = %d hashes, want nil", bad[0], bad[1], len(got))
		}
	}
	for _, b := range []int{-1, store.TreeLeaves} {
		if got, err := e.s.Bucket(b); got != nil || err != nil {
			t.Errorf("Bucket(%d) = %v, %v; want nothing", b, got, err)
		}
	}
}

// sameBucket returns n paths under dir that share one hash-tree bucket,
// in descending path order.
func sameBucket(dir string, n int) []string {
	want := BucketOf(dir + "/0")
	out := []string{dir + "/0"}
	for i := 1; len(out) < n; i++ {
		if p := fmt.Sprintf("%s/%d", dir, i); BucketOf(p) == want {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func testBuckets(t *testing.T, open Opener) {
	e := newEnv(t, open)
	paths := sameBucket("/q", 4)
	b := BucketOf(paths[0])
	// Written out of order, by Write and Apply, one of them deleted, one
	// replaced: Bucket returns exactly the bucket's nodes, in path order,
	// with their current metadata, before and after a reopen.
	e.put(paths[0], "0", paths[1], "1")
	e.apply([]store.Node{{Path: paths[2], Meta: store.Meta{Version: 5, Origin: 3, Seq: 1}, Data: []byte("2")}})
	e.put(paths[3], "3")
	e.write(del(paths[1]))
	e.put(paths[0], "0'")
	e.put("/other", "x")
	want := slices.Sorted(slices.Values(paths))
	for _, phase := range []string{"open", "reopened"} {
		got, err := e.s.Bucket(b)
		if err != nil {
			t.Fatalf("%s: Bucket(%d) error: %v", phase, b, err)
		}
		var gotPaths []string
		for _, n := range got {
			gotPaths = append(gotPaths, n.Path)
			want := store.Node{Path: n.Path}
			want.Meta, _ = e.s.Lookup(n.Path)
			if !want.Deleted {
				want = e.mustGet(n.Path)
			}
			if !nodeEqual(n, want) {
				t.Errorf("%s: Bucket(%d) has %+v, want %+v", phase, b, n, want)
			}
		}
		if !slices.Equal(gotPaths, want) {
			t.Errorf("%s: Bucket(%d) paths = %q, want %q", phase, b, gotPaths, want)
		}
		e.reopen()
	}
}

// remoteNodes returns a random history of replicated writes from a few
// origins over a few paths, tombstones and version ties included.
func remoteNodes(r *rand.Rand, n int) []store.Node {
	var out []store.Node
	seqs := map[uint64]uint64{}
	used := map[[2]uint64]bool{} // an origin never issues a version twice
	for len(out) < n {
		o := uint64(r.IntN(3) + 100)
		v := uint64(r.IntN(n) + 1)
		if used[[2]uint64{o, v}] {
			continue
		}
		used[[2]uint64{o, v}] = true
		seqs[o]++
		m := store.Meta{Version: v, Origin: o, Seq: seqs[o], Deleted: r.IntN(4) == 0}
		nd := store.Node{Path: fmt.Sprintf("/p/%d", r.IntN(8)), Meta: m}
		if !m.Deleted {
			nd.Data = fmt.Appendf(nil, "%d/%d", o, m.Seq)
		}
		out = append(out, nd)
	}
	return out
}

func testApplyConverges(t *testing.T, open Opener) {
	r := rand.New(rand.NewPCG(1, 2))
	nodes := remoteNodes(r, 200)
	a, b := newEnv(t, open), newEnv(t, open)
	// a gets them in order in one batch, b shuffled in small batches.
	a.apply(nodes)
	shuffled := slices.Clone(nodes)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for len(shuffled) > 0 {
		k := min(len(shuffled), r.IntN(10)+1)
		b.apply(shuffled[:k])
		shuffled = shuffled[k:]
	}
	sa, sb := takeSnapshot(t, a.s), takeSnapshot(t, b.s)
	sb.origin, sb.vector = sa.origin, sa.vector // these differ by design
	if d := sb.diff(sa); d != "" {
		t.Fatalf("stores fed the same nodes differ: %s", d)
	}
	for i := range store.TreeFanout {
		if !slices.Equal(a.s.TreeChildren(1, i), b.s.TreeChildren(1, i)) {
			t.Errorf("TreeChildren(1, %d) differ", i)
		}
	}
	// The winner of each path is the Newest node sent for it.
	winners := map[string]store.Node{}
	for _, n := range nodes {
		if w, ok := winners[n.Path]; !ok || n.Newer(w.Meta) {
			winners[n.Path] = n
		}
	}
	for p, w := range winners {
		w.Size = uint32(len(w.Data))
		if w.Deleted {
			w.Size = 0
		}
		m, ok := a.s.Lookup(p)
		if !ok || m != w.Meta {
			t.Errorf("Lookup(%q) = %+v, want %+v", p, m, w.Meta)
		}
		if n, err := a.s.Get(p); !w.Deleted && (err != nil || !bytes.Equal(n.Data, w.Data)) {
			t.Errorf("Get(%q) = %q, %v, want %q", p, n.Data, err, w.Data)
		}
	}
}

func testApplyLWW(t *testing.T, open Opener) {
	e := newEnv(t, open)
	node := func(version, origin, seq uint64, data string) store.Node {
		return store.Node{Path: "/x", Meta: store.Meta{Version: version, Origin: origin, Seq: seq}, Data: []byte(data)}
	}
	tests := []struct {
		name     string
		node     store.Node
		changed  int
		wantData string
	}{
		{"first", node(10, 5, 1, "a"), 1, "a"},
		{"older", node(9, 6, 1, "b"), 0, "a"},
		{"same", node(10, 5, 1, "c"), 0, "a"},
		{"tie, lower origin", node(10, 4, 1, "d"), 0, "a"},
		{"tie, higher origin", node(10, 6, 2, "e"), 1, "e"},
		{"newer", node(11, 2, 1, "f"), 1, "f"},
		{"own origin", node(99, e.s.Origin(), 1, "g"), 0, "f"},
		{"tombstone", store.Node{Path: "/x", Meta: store.Meta{Version: 12, Origin: 2, Seq: 2, Deleted: true}, Data: []byte("ignored")}, 1, ""},
		{"older than tombstone", node(11, 9, 1, "h"), 0, ""},
		{"over tombstone", node(13, 2, 3, "i"), 1, "i"},
	}
	for _, tt := range tests {
		if got := e.apply([]store.Node{tt.node}); got != tt.changed {
			t.Errorf("%s: Apply = %d, want %d", tt.name, got, tt.changed)
		}
		n, err := e.s.Get("/x")
		switch {
		case tt.wantData == "" && !errors.Is(err, store.ErrNotFound):
			t.Errorf("%s: Get = %+v, %v, want ErrNotFound", tt.name, n, err)
		case tt.wantData != "" && (err != nil || string(n.Data) != tt.wantData):
			t.Errorf("%s: Get = %q, %v, want %q", tt.name, n.Data, err, tt.wantData)
		}
	}
	if m, _ := e.s.Lookup("/x"); m.Size != 1 {
		t.Errorf("Apply kept size %d, want len(data)", m.Size)
	}
	// Apply makes no leaf/directory checks: replicas keep both.
	e.apply([]store.Node{{Path: "/x/y", Meta: store.Meta{Version: 20, Origin: 2, Seq: 4}, Data: []byte("j")}})
	if _, err := e.s.Get("/x/y"); err != nil {
		t.Errorf("Get(/x/y) = %v after Apply under a leaf", err)
	}
	// A local write at either path is still refused.
	if _, err := e.s.Write(context.Background(), []store.Write{put("/x/z", "k")}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Write under a replicated leaf = %v, want ErrConflict", err)
	}
}

func testApplyInvalid(t *testing.T, open Opener) {
	e := newEnv(t, open)
	ok := store.Node{Path: "/ok", Meta: store.Meta{Version: 1, Origin: 2, Seq: 1}, Data: []byte("x")}
	tests := []struct {
		name string
		node store.Node
		want error
	}{
		{"path", store.Node{Path: "/a/../b", Meta: store.Meta{Version: 1, Origin: 2, Seq: 2}}, store.ErrInvalidPath},
		{"origin", store.Node{Path: "/b", Meta: store.Meta{Version: 1, Seq: 2}}, store.ErrInvalidNode},
		{"seq", store.Node{Path: "/b", Meta: store.Meta{Version: 1, Origin: 2}}, store.ErrInvalidNode},
	}
	for _, tt := range tests {
		if _, err := e.s.Apply(context.Background(), []store.Node{ok, tt.node}, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: Apply = %v, want %v", tt.name, err, tt.want)
		}
	}
	if n := len(walk(e.s, "/")); n != 0 || len(e.s.Vector()) != 0 {
		t.Errorf("refused Apply left %d nodes, vector %v", n, e.s.Vector())
	}
}

func testVector(t *testing.T, open Opener) {
	e := newEnv(t, open)
	n := func(origin, seq, version uint64) store.Node {
		return store.Node{Path: fmt.Sprintf("/v/%d", version), Meta: store.Meta{Version: version, Origin: origin, Seq: seq}, Data: []byte("x")}
	}
	adv := func(origin, from, to uint64) store.Advance { return store.Advance{Origin: origin, From: from, To: to} }
	own := e.s.Origin()
	steps := []struct {
		name  string
		nodes []store.Node
		adv   []store.Advance
		want  store.Vector
	}{
		{"contiguous", []store.Node{n(1, 1, 10), n(1, 2, 11)}, nil, store.Vector{1: 2}},
		{"gap", []store.Node{n(1, 5, 12)}, nil, store.Vector{1: 2}},
		{"fill", []store.Node{n(1, 3, 13)}, nil, store.Vector{1: 3}},
		{"skipped node counts", []store.Node{{Path: "/v/13", Meta: store.Meta{Version: 1, Origin: 1, Seq: 4}}}, nil, store.Vector{1: 4}},
		{"advance", nil, []store.Advance{adv(1, 4, 9)}, store.Vector{1: 9}},
		{"advance from above", nil, []store.Advance{adv(1, 10, 20)}, store.Vector{1: 9}},
		{"advance from below", nil, []store.Advance{adv(1, 2, 12)}, store.Vector{1: 12}},
		{"no lowering", nil, []store.Advance{adv(1, 0, 3)}, store.Vector{1: 12}},
		{"new origin", nil, []store.Advance{adv(2, 0, 5)}, store.Vector{1: 12, 2: 5}},
		{"nodes then advance", []store.Node{n(3, 1, 14)}, []store.Advance{adv(3, 1, 7)}, store.Vector{1: 12, 2: 5, 3: 7}},
		{"own origin", []store.Node{n(own, 1, 15)}, []store.Advance{adv(own, 0, 50)}, store.Vector{1: 12, 2: 5, 3: 7}},
	}
	sub := e.subscribe(t, 100)
	events := 0
	for _, st := range steps {
		before := e.s.Vector()
		changed := e.apply(st.nodes, st.adv...)
		if got := e.s.Vector(); !maps.Equal(got, st.want) {
			t.Fatalf("%s: Vector() = %v, want %v", st.name, got, st.want)
		}
		if changed > 0 || !maps.Equal(before, st.want) {
			events++
		}
	}
	evs := sub.drain(t, events)
	last := evs[len(evs)-1]
	if !maps.Equal(last.Vector, e.s.Vector()) {
		t.Errorf("last event vector %v, want %v", last.Vector, e.s.Vector())
	}
	e.reopen()
	if got := e.s.Vector(); !maps.Equal(got, steps[len(steps)-1].want) {
		t.Errorf("Vector() after reopen = %v, want %v", got, steps[len(steps)-1].want)
	}
}

// subscription wraps a Subscription for tests.
type subscription struct{ *store.Subscription }

// subscribe subscribes to e's store; cleanup closes the subscription.
func (e *env) subscribe(t *testing.T, buf int) subscription {
	sub := e.s.Subscribe(buf)
	t.Cleanup(sub.Close)
	return subscription{sub}
}

// drain receives n events, failing the test if they do not come within a
// deadline, then checks that no more are queued.
func (s subscription) drain(t *testing.T, n int) []store.Event {
	t.Helper()
	var out []store.Event
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-s.C():
			if !ok {
				t.Fatalf("subscription closed after %d events, want %d", len(out), n)
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("got %d events, want %d", len(out), n)
		}
	}
	select {
	case ev, ok := <-s.C():
		if ok {
			t.Fatalf("unexpected event %+v after %d", ev, n)
		}
	default:
	}
	return out
}

func testSubscribe(t *testing.T, open Opener) {
	e := newEnv(t, open)
	sub := e.subscribe(t, 100)
	own := e.s.Origin()
	e.put("/a", "1", "/b", "2")
	e.put("/a", "1") // no-op, no event
	e.write(del("/b"))
	e.apply([]store.Node{{Path: "/r", Meta: store.Meta{Version: 1, Origin: 5, Seq: 1}, Data: []byte("r")}})
	e.apply([]store.Node{{Path: "/r", Meta: store.Meta{Version: 0, Origin: 5, Seq: 2}, Data: []byte("old")}}) // vector only
	e.apply([]store.Node{{Path: "/r", Meta: store.Meta{Version: 0, Origin: 5, Seq: 2}, Data: []byte("old")}}) // nothing

	want := []struct {
		nodes  []string
		data   []string
		vector store.Vector
	}{
		{[]string{"/a", "/b"}, []string{"1", "2"}, store.Vector{own: 2}},
		{[]string{"/b"}, []string{""}, store.Vector{own: 3}},
		{[]string{"/r"}, []string{"r"}, store.Vector{own: 3, 5: 1}},
		{nil, nil, store.Vector{own: 3, 5: 2}},
	}
	evs := sub.drain(t, len(want))
	for i, w := range want {
		ev := evs[i]
		var data []string
		for _, n := range ev.Nodes {
			data = append(data, string(n.Data))
			if (n.Origin == own) != (n.Path != "/r") {
				t.Errorf("event %d: node %q from origin %d", i, n.Path, n.Origin)
			}
		}
		if !slices.Equal(paths(ev.Nodes), w.nodes) || !slices.Equal(data, w.data) || !maps.Equal(ev.Vector, w.vector) {
			t.Errorf("event %d = %q %q %v, want %q %q %v", i, paths(ev.Nodes), data, ev.Vector, w.nodes, w.data, w.vector)
		}
	}
	if sub.Overflowed() {
		t.Errorf("Overflowed() = true")
	}
	sub.Close()
	sub.Close()
	if _, ok := <-sub.C(); ok {
		t.Errorf("event after Close")
	}
	e.put("/c", "3") // publishing to nobody
}

func testOverflow(t *testing.T, open Opener) {
	e := newEnv(t, open)
	slow := e.subscribe(t, 2)
	fast := e.subscribe(t, 10)
	for i := range 3 {
		e.put(fmt.Sprintf("/o/%d", i), "x")
	}
	fast.drain(t, 3)
	n := 0
	for range slow.C() {
		n++
	}
	if n != 2 || !slow.Overflowed() {
		t.Errorf("slow subscriber got %d events, overflowed %v; want 2, true", n, slow.Overflowed())
	}
	if fast.Overflowed() {
		t.Errorf("fast subscriber overflowed")
	}
	slow.Close()
}

func testConcurrentWrites(t *testing.T, open Opener) {
	e := newEnv(t, open)
	const writers, each = 32, 10
	before := uint64(0)
	counter, counts := e.s.(CommitCounter)
	if counts {
		before = counter.CommitCount()
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ws := []store.Write{put(fmt.Sprintf("/w/%d/%d", w, i), fmt.Sprint(w*each+i))}
				if _, err := e.s.Write(context.Background(), ws); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Write: %v", err)
	}
	if counts {
		if n := counter.CommitCount() - before; n >= writers*each {
			t.Errorf("%d writes took %d commits: no group commit", writers*each, n)
		} else {
			t.Logf("%d writes in %d commits", writers*each, n)
		}
	}
	e.reopen()
	seqs := map[uint64]bool{}
	for w := range writers {
		for i := range each {
			p := fmt.Sprintf("/w/%d/%d", w, i)
			n := e.mustGet(p)
			if string(n.Data) != fmt.Sprint(w*each+i) {
				t.Errorf("Get(%q) = %q", p, n.Data)
			}
			seqs[n.Seq] = true
		}
	}
	for s := uint64(1); s <= writers*each; s++ {
		if !seqs[s] {
			t.Fatalf("seq %d missing: seqs not dense", s)
		}
	}
}

func testClose(t *testing.T, open Opener) {
	e := newEnv(t, open)
	e.put("/a", "1")
	sub := e.s.Subscribe(4)
	for range 2 {
		if err := e.s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
	}
	if _, ok := <-sub.C(); ok {
		t.Errorf("subscription open after Close")
	}
	sub.Close()
	ctx := context.Background()
	_, errW := e.s.Write(ctx, []store.Write{put("/b", "2")})
	_, errA := e.s.Apply(ctx, []store.Node{{Path: "/b", Meta: store.Meta{Version: 1, Origin: 2, Seq: 1}}}, nil)
	_, errG := e.s.Get("/a")
	_, _, errS := e.s.Scan(store.ScanOptions{Prefix: "/"})
	_, _, _, errC := e.s.Changes(e.s.Origin(), 0, 0, 0)
	for name, err := range map[string]error{"Write": errW, "Apply": errA, "Get": errG, "Scan": errS, "Changes": errC} {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if _, ok := <-e.s.Subscribe(1).C(); ok {
		t.Errorf("Subscribe after Close delivered an event")
	}
	// The file opens again, and the cleanup's Close succeeds on it.
	e.s = e.open(t, e.cfg)
	e.mustGet("/a")
}

func testCloseWhileWriting(t *testing.T, open Opener) {
	e := newEnv(t, open)
	const writers = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
	)
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				p := fmt.Sprintf("/w/%d/%d", w, i)
				_, err := e.s.Write(context.Background(), []store.Write{put(p, "x")})
				if i == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Write(%q) = %v, want success or ErrClosed", p, err)
					return
				}
				mu.Lock()
				acked = append(acked, p)
				mu.Unlock()
			}
		})
	}
	for range writers {
		<-started
	}
	if err := e.s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wg.Wait()
	e.s = e.open(t, e.cfg)
	for _, p := range acked {
		e.mustGet(p)
	}
	if got := e.s.Stats().Nodes; got != uint64(len(acked)) {
		t.Errorf("store holds %d nodes, %d writes were acknowledged", got, len(acked))
	}
}

// feedUntil reads f until a page for which stop returns true, and returns
// the nodes read by path (the last version wins) and the last page.
func feedUntil(t *testing.T, f *store.Feed, stop func(store.FeedPage) bool) (map[string]store.Node, store.FeedPage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string]store.Node{}
	for {
		page, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("Feed.Next = %v", err)
		}
		for _, n := range page.Nodes {
			if o, ok := got[n.Path]; !ok || n.Newer(o.Meta) {
				got[n.Path] = n
			}
		}
		if stop(page) {
			return got, page
		}
	}
}

func caught(p store.FeedPage) bool { return p.Caught }

// feedWant returns the nodes under prefix not covered by from, with data.
func feedWant(t *testing.T, s Store, prefix string, from store.Vector) map[string]store.Node {
	t.Helper()
	want := map[string]store.Node{}
	for _, n := range walkData(t, s, prefix) {
		if !from.Covers(n.Origin, n.Seq) {
			want[n.Path] = n
		}
	}
	return want
}

func sameNodes(got, want map[string]store.Node) bool {
	return maps.EqualFunc(got, want, nodeEqual)
}

func testFeed(t *testing.T, open Opener) {
	e := newEnv(t, open)
	for i := range 20 {
		e.put(fmt.Sprintf("/f/%02d", i), fmt.Sprint(i), fmt.Sprintf("/g/%02d", i), fmt.Sprint(i))
	}
	e.write(del("/f/05"))
	e.apply([]store.Node{{Path: "/f/remote", Meta: store.Meta{Version: 1, Origin: 9, Seq: 1}, Data: []byte("r")}})

	// From nothing: every winner under the prefix, tombstones included,
	// then a Caught page with the store's vector.
	f, err := e.s.Feed(store.FeedOptions{Prefixes: []string{"/f"}, MaxNodes: 3, Buffer: 16})
	if err != nil {
		t.Fatalf("Feed = %v", err)
	}
	defer f.Close()
	got, last := feedUntil(t, f, caught)
	if want := feedWant(t, e.s, "/f", nil); !sameNodes(got, want) {
		t.Errorf("Feed replay = %v, want %v", got, want)
	}
	if !maps.Equal(last.Vector, e.s.Vector()) {
		t.Errorf("Caught page vector = %v, want %v", last.Vector, e.s.Vector())
	}

	// Live: a commit under the prefix comes as a page; one elsewhere only
	// moves the vector.
	e.put("/g/00", "g2")
	e.put("/f/00", "f2")
	got, last = feedUntil(t, f, func(store.FeedPage) bool { return true })
	if len(got) != 1 || got["/f/00"].Data == nil || string(got["/f/00"].Data) != "f2" || last.Replay {
		t.Errorf("live page = %v, want /f/00 = f2", last)
	}
	if !maps.Equal(last.Vector, e.s.Vector()) || !maps.Equal(f.Vector(), e.s.Vector()) {
		t.Errorf("live page vector = %v, feed %v, want %v", last.Vector, f.Vector(), e.s.Vector())
	}
	resume := last.Vector

	// Resume from a bookmark, with a few changes since and a Keep that
	// drops one path: only what the bookmark lacks, filtered.
	e.put("/f/01", "f3", "/g/01", "g3")
	e.write(del("/f/02"))
	e.apply([]store.Node{{Path: "/f/remote", Meta: store.Meta{Version: ^uint64(0) >> 1, Origin: 9, Seq: 2}, Data: []byte("r2")}})
	e.put("/f/03", "hidden")
	keep := func(path string, _ store.Meta) bool { return path != "/f/03" }
	for _, name := range []string{"/f", "/"} {
		r, err := e.s.Feed(store.FeedOptions{Prefixes: []string{name}, From: resume, Keep: keep})
		if err != nil {
			t.Fatalf("Feed = %v", err)
		}
		got, last = feedUntil(t, r, caught)
		r.Close()
		want := feedWant(t, e.s, name, resume)
		delete(want, "/f/03")
		if !sameNodes(got, want) {
			t.Errorf("Feed(%s) resumed = %v, want %v", name, got, want)
		}
		if !maps.Equal(last.Vector, e.s.Vector()) {
			t.Errorf("Feed(%s) resumed vector = %v, want %v", name, last.Vector, e.s.Vector())
		}
	}

	// Nothing new: an empty Caught page.
	r, err := e.s.Feed(store.FeedOptions{Prefixes: []string{"/f"}, From: e.s.Vector()})
	if err != nil {
		t.Fatalf("Feed = %v", err)
	}
	if got, _ := feedUntil(t, r, caught); len(got) != 0 {
		t.Errorf("Feed from the store's vector = %v, want nothing", got)
	}
	r.Close()
	if _, err := r.Next(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	// A node no vector covers (brought by hash-tree repair) is replayed
	// to a consumer holding the store's vector.
	orphan := store.Node{Path: "/f/orphan", Meta: store.Meta{Version: 7, Origin: 77, Seq: 1 << 40}, Data: []byte("o")}
	e.apply([]store.Node{orphan})
	r, err = e.s.Feed(store.FeedOptions{Prefixes: []string{"/f"}, From: e.s.Vector()})
	if err != nil {
		t.Fatalf("Feed = %v", err)
	}
	got, _ = feedUntil(t, r, caught)
	r.Close()
	if n, ok := got[orphan.Path]; len(got) != 1 || !ok || n.Meta != (store.Meta{Version: 7, Origin: 77, Seq: 1 << 40, Size: 1}) {
		t.Errorf("Feed from the store's vector = %v, want the repaired node %s", got, orphan.Path)
	}
	if _, err := e.s.Feed(store.FeedOptions{Prefixes: []string{"bad"}}); !errors.Is(err, store.ErrInvalidPath) {
		t.Errorf("Feed(bad prefix) = %v, want ErrInvalidPath", err)
	}
}

func testFeedOverflow(t *testing.T, open Opener) {
	e := newEnv(t, open)
	e.put("/f/a", "0")
	f, err := e.s.Feed(store.FeedOptions{Prefixes: []string{"/f"}, Buffer: 1})
	if err != nil {
		t.Fatalf("Feed = %v", err)
	}
	defer f.Close()
	feedUntil(t, f, caught)
	// Many commits the consumer does not read: the feed overflows, then
	// catches up from the store; nothing is lost.
	for i := range 10 {
		e.put(fmt.Sprintf("/f/%d", i), fmt.Sprint(i))
	}
	e.put("/f/a", "last")
	want := feedWant(t, e.s, "/f", nil)
	delete(want, "/f/a")
	got := map[string]store.Node{}
	target := e.s.Vector()
	for len(got) < len(want)+1 || !maps.Equal(f.Vector(), target) {
		page, _ := feedUntil(t, f, func(store.FeedPage) bool { return true })
		maps.Copy(got, page)
	}
	if a := got["/f/a"]; string(a.Data) != "last" {
		t.Errorf("after overflow /f/a = %q, want last", a.Data)
	}
	delete(got, "/f/a")
	if !sameNodes(got, want) {
		t.Errorf("after overflow got %v, want %v", got, want)
	}
}
