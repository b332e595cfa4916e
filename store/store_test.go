package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
	"github.com/replds/replds/store/storetest"
)

var (
	randomSeed  = flag.Uint64("store.seed", 1, "seed of TestStore_Random")
	randomSteps = flag.Int("store.steps", 3000, "operations of TestStore_Random")
)

// openStore opens cfg and registers a cleanup that checks the radix tree
// against bbolt and closes the store (Close is idempotent, so tests may
// close it earlier).
func openStore(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg store.Config) storetest.Store {
		s, err := store.Open(cfg)
		if err != nil {
			t.Fatalf("Open(%s) = %v", cfg.Path, err)
		}
		return s
	})
}

func TestOpen_BadConfig(t *testing.T) {
	cfg := store.DefaultConfig("")
	if _, err := store.Open(cfg); err == nil {
		t.Errorf("Open(empty path) succeeded")
	}
	cfg = store.DefaultConfig(t.TempDir() + "/s.db")
	cfg.MaxBatch = 0
	if _, err := store.Open(cfg); err == nil {
		t.Errorf("Open(MaxBatch 0) succeeded")
	}
	if _, err := store.Open(store.DefaultConfig(t.TempDir() + "/missing/dir/s.db")); err == nil {
		t.Errorf("Open(missing directory) succeeded")
	}
}

// TestStore_ApplyPublishedBeforeItsCommit: a replicated change reaches
// subscribers while its commit (the fsyncs) runs; a write of this store's
// own only once durable; and a reader who subscribes meanwhile, then reads
// the state, still misses nothing.
func TestStore_ApplyPublishedBeforeItsCommit(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	ctx := context.Background()
	sub := s.Subscribe(10)
	defer sub.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	s.SetCommitHook(func() error {
		entered <- struct{}{}
		<-release
		return nil
	})
	deadline := time.After(10 * time.Second)
	wait := func(what string, c <-chan store.Event) store.Event {
		t.Helper()
		select {
		case ev := <-c:
			return ev
		case <-deadline:
			select {
			case <-release:
			default:
				close(release) // let the commit finish, and Close with it
			}
			t.Fatalf("no event for %s", what)
			return store.Event{}
		}
	}

	peer := store.Node{Path: "/r", Meta: store.Meta{Version: 1 << 40, Origin: 42, Seq: 1}, Data: []byte("r")}
	applied := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, []store.Node{peer}, nil)
		applied <- err
	}()
	<-entered // the commit has begun and waits
	if ev := wait("an Apply whose commit runs", sub.C()); len(ev.Nodes) != 1 || ev.Nodes[0].Path != "/r" {
		t.Errorf("event = %+v, want /r", ev)
	}
	found := make(chan bool, 1)
	go func() {
		late := s.Subscribe(10)
		defer late.Close()
		_, ok := s.Lookup("/r")
		found <- ok
	}()
	close(release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if !<-found {
		t.Errorf("a subscriber that came during the commit read a state without /r, and missed its event")
	}

	release = make(chan struct{})
	written := make(chan error, 1)
	go func() {
		_, err := s.Write(ctx, []store.Write{{Path: "/w", Data: []byte("w")}})
		written <- err
	}()
	<-entered
	select {
	case ev := <-sub.C():
		t.Errorf("event %+v for a write not yet durable", ev)
	default:
	}
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if ev := wait("a committed Write", sub.C()); len(ev.Nodes) != 1 || ev.Nodes[0].Path != "/w" {
		t.Errorf("event = %+v, want /w", ev)
	}
	s.SetCommitHook(nil)
	if err := s.CheckConsistency(); err != nil {
		t.Error(err)
	}
}

func TestStore_CommitFailure(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	ctx := context.Background()
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	root, vec, stats := s.Root(), s.Vector(), s.Stats()
	sub := s.Subscribe(10)
	defer sub.Close()

	boom := errors.New("disk on fire")
	s.SetCommitFailure(boom)
	if _, err := s.Write(ctx, []store.Write{{Path: "/b", Data: []byte("2")}}); !errors.Is(err, boom) {
		t.Errorf("Write with a failing commit = %v, want %v", err, boom)
	}
	select {
	case ev := <-sub.C():
		t.Errorf("event %+v for a failed commit", ev)
	default:
	}
	// A replicated change is published before its commit (see
	// TestStore_ApplyPublishedBeforeItsCommit): its event went out.
	adv := []store.Advance{{Origin: 5, To: 3}}
	if _, err := s.Apply(ctx, nil, adv); !errors.Is(err, boom) {
		t.Errorf("Apply with a failing commit = %v, want %v", err, boom)
	}
	if s.Root() != root || !maps.Equal(s.Vector(), vec) || s.Stats() != stats {
		t.Errorf("failed commit changed memory")
	}
	if _, ok := s.Lookup("/b"); ok {
		t.Errorf("Lookup(/b) found a node whose commit failed")
	}

	s.SetCommitFailure(nil)
	got, err := s.Write(ctx, []store.Write{{Path: "/b", Data: []byte("2")}})
	if err != nil || len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("Write after recovery = %+v, %v, want seq 2", got, err)
	}
	if err := s.CheckConsistency(); err != nil {
		t.Error(err)
	}
}

func TestStore_ContextDone(t *testing.T) {
	s := openStore(t, storetest.Config(t, t.TempDir(), storetest.NewClock(storetest.Epoch)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Write(ctx, []store.Write{{Path: "/a", Data: []byte("1")}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write(canceled) = %v, want context.Canceled", err)
	}
	if _, err := s.Apply(ctx, nil, []store.Advance{{Origin: 3, To: 1}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply(canceled) = %v, want context.Canceled", err)
	}
	if _, ok := s.Lookup("/a"); ok || len(s.Vector()) != 0 {
		t.Errorf("canceled calls changed the store")
	}
}

// model is the obviously-correct map TestStore_Random checks the store
// against.
type model struct {
	nodes  map[string]store.Node // data for live nodes
	vector store.Vector
}

func (m *model) live() map[string]string {
	out := map[string]string{}
	for p, n := range m.nodes {
		if !n.Deleted {
			out[p] = string(n.Data)
		}
	}
	return out
}

// write predicts a Write: the paths it changes in order, or its error.
func (m *model) write(ws []store.Write) ([]string, error) {
	before, cur := m.live(), m.live()
	var touched []string
	seen := map[string]bool{}
	touch := func(p string) {
		if !seen[p] {
			seen[p] = true
			touched = append(touched, p)
		}
	}
	liveUnder := func(p string) bool {
		for q := range cur {
			if q != p && nodepath.Under(q, p) {
				return true
			}
		}
		return false
	}
	for _, w := range ws {
		_, live := cur[w.Path]
		switch {
		case w.Delete && w.Recursive:
			var ps []string
			for q := range cur {
				if nodepath.Under(q, w.Path) {
					ps = append(ps, q)
				}
			}
			sort.Strings(ps)
			for _, q := range ps {
				touch(q)
				delete(cur, q)
			}
		case w.Delete && live:
			touch(w.Path)
			delete(cur, w.Path)
		case w.Delete && liveUnder(w.Path):
			return nil, store.ErrIsDir
		case w.Delete:
		default:
			touch(w.Path)
			cur[w.Path] = string(w.Data)
		}
	}
	var changed []string
	for _, p := range touched {
		d0, live0 := before[p]
		d1, live1 := cur[p]
		if live0 != live1 || d0 != d1 {
			changed = append(changed, p)
		}
	}
	for _, p := range changed {
		if _, live := cur[p]; !live {
			continue
		}
		for a := range cur {
			if a != p && (nodepath.Under(p, a) || nodepath.Under(a, p)) {
				return nil, store.ErrConflict
			}
		}
	}
	return changed, nil
}

// apply predicts an Apply and returns the number of changed nodes.
func (m *model) apply(own uint64, nodes []store.Node, adv []store.Advance) int {
	changed := map[string]bool{}
	for _, n := range nodes {
		if n.Origin == own {
			continue
		}
		if cur, ok := m.nodes[n.Path]; !ok || n.Newer(cur.Meta) {
			if n.Deleted {
				n.Data = nil
			}
			n.Size = uint32(len(n.Data))
			m.nodes[n.Path] = n
			changed[n.Path] = true
		}
		if n.Seq == m.vector[n.Origin]+1 {
			m.vector[n.Origin] = n.Seq
		}
	}
	for _, a := range adv {
		if a.Origin != own && m.vector[a.Origin] >= a.From && a.To > m.vector[a.Origin] {
			m.vector[a.Origin] = a.To
		}
	}
	return len(changed)
}

// randomRun drives one store and its model through random operations.
type randomRun struct {
	t     *testing.T
	r     *rand.Rand
	clock *storetest.Clock
	cfg   store.Config
	s     *store.Store
	m     *model
	// universe is every path the run touches.
	universe []string
	// sent and held are the remote writes issued so far; held ones are
	// delivered late, to open and close gaps in the vector.
	sent, held []store.Node
	nextSeq    map[uint64]uint64
	versions   map[[2]uint64]bool // (origin, version) pairs issued
	lastIssued uint64
	// outcomes counts what the operations did, to see that the run
	// covers the interesting cases.
	outcomes map[string]int
}

func TestStore_Random(t *testing.T) {
	t.Logf("seed %d (rerun with -store.seed=%d)", *randomSeed, *randomSeed)
	clock := storetest.NewClock(storetest.Epoch)
	cfg := storetest.Config(t, t.TempDir(), clock)
	cfg.NoSync = true
	cfg.Logger = discard // reopens would flood the output
	run := &randomRun{
		t:        t,
		r:        rand.New(rand.NewPCG(*randomSeed, 0)),
		clock:    clock,
		cfg:      cfg,
		m:        &model{nodes: map[string]store.Node{}, vector: store.Vector{}},
		nextSeq:  map[uint64]uint64{},
		versions: map[[2]uint64]bool{},
		outcomes: map[string]int{},
	}
	for _, a := range []string{"a", "b", "c"} {
		run.universe = append(run.universe, "/"+a)
		for _, b := range []string{"a", "b", "c"} {
			run.universe = append(run.universe, "/"+a+"/"+b)
			for _, c := range []string{"a", "b"} {
				run.universe = append(run.universe, "/"+a+"/"+b+"/"+c)
			}
		}
	}
	run.open()
	for step := range *randomSteps {
		run.clock.Add(time.Duration(run.r.IntN(3000)-1000) * time.Millisecond)
		var what string
		switch op := run.r.IntN(100); {
		case op < 55:
			what = run.write()
		case op < 93:
			what = run.apply()
		case op < 95:
			what = "reopen"
			run.reopen()
		default:
			what = "check"
			if err := run.s.CheckConsistency(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		if err := run.compare(); err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
	}
	if err := run.s.CheckConsistency(); err != nil {
		t.Fatal(err)
	}
	t.Logf("outcomes: %v", run.outcomes)
}

func (run *randomRun) open() {
	run.s = openStore(run.t, run.cfg)
	run.t.Cleanup(func() {
		if err := run.s.CheckConsistency(); err != nil && !errors.Is(err, store.ErrClosed) {
			run.t.Errorf("consistency at cleanup: %v", err)
		}
	})
}

func (run *randomRun) reopen() {
	root, vec := run.s.Root(), run.s.Vector()
	if err := run.s.CheckConsistency(); err != nil {
		run.t.Fatal(err)
	}
	if err := run.s.Close(); err != nil {
		run.t.Fatal(err)
	}
	run.open()
	if run.s.Root() != root || !maps.Equal(run.s.Vector(), vec) {
		run.t.Fatalf("reopen changed root %x -> %x or vector %v -> %v", root, run.s.Root(), vec, run.s.Vector())
	}
}

// path picks a path of the universe, deep ones more often than shallow
// ones, which as leaves would conflict with most others.
func (run *randomRun) path() string {
	for {
		p := run.universe[run.r.IntN(len(run.universe))]
		if depth := strings.Count(p, "/"); depth == 3 || run.r.IntN(12/depth) == 0 {
			return p
		}
	}
}

func (run *randomRun) data() []byte {
	return []byte([]string{"", "x", "y", "zz", "long data"}[run.r.IntN(5)])
}

func (run *randomRun) write() string {
	var ws []store.Write
	seen := map[string]bool{}
	for range run.r.IntN(4) + 1 {
		p := run.path()
		if seen[p] {
			continue
		}
		seen[p] = true
		switch k := run.r.IntN(100); {
		case k < 50:
			ws = append(ws, store.Write{Path: p, Data: run.data()})
		case k < 75:
			ws = append(ws, store.Write{Path: p, Delete: true})
		default:
			ws = append(ws, store.Write{Path: p, Delete: true, Recursive: true})
		}
	}
	desc := fmt.Sprintf("write %+v", ws)
	want, wantErr := run.m.write(ws)
	got, err := run.s.Write(context.Background(), ws)
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			run.t.Fatalf("%s = %v, want %v", desc, err, wantErr)
		}
		run.outcomes[wantErr.Error()]++
		return desc
	}
	if len(want) == 0 {
		run.outcomes["write no-op"]++
	} else {
		run.outcomes["write"]++
	}
	if err != nil {
		run.t.Fatalf("%s = %v, want %q", desc, err, want)
	}
	gotPaths := make([]string, len(got))
	for i, n := range got {
		gotPaths[i] = n.Path
	}
	if !slices.Equal(gotPaths, want) {
		run.t.Fatalf("%s changed %q, want %q", desc, gotPaths, want)
	}
	own := run.s.Origin()
	data := map[string][]byte{}
	for _, w := range ws {
		if !w.Delete {
			data[w.Path] = w.Data
		}
	}
	for _, n := range got {
		prev, had := run.m.nodes[n.Path]
		if n.Origin != own || n.Seq != run.m.vector[own]+1 || n.Version <= run.lastIssued || (had && n.Version <= prev.Version) {
			run.t.Fatalf("%s: node %+v after %+v (own seq %d, last version %d)", desc, n, prev.Meta, run.m.vector[own], run.lastIssued)
		}
		run.m.vector[own] = n.Seq
		run.lastIssued = n.Version
		if !n.Deleted {
			n.Data = data[n.Path]
		}
		run.m.nodes[n.Path] = n
	}
	return desc
}

func (run *randomRun) apply() string {
	r := run.r
	var nodes []store.Node
	for range r.IntN(5) + 1 {
		switch k := r.IntN(100); {
		case k < 10 && len(run.held) > 0:
			i := r.IntN(len(run.held))
			nodes = append(nodes, run.held[i])
			run.held = slices.Delete(run.held, i, i+1)
		case k < 15 && len(run.sent) > 0:
			nodes = append(nodes, run.sent[r.IntN(len(run.sent))]) // resent
		case k < 18:
			nodes = append(nodes, store.Node{Path: run.path(), Meta: store.Meta{Version: ^uint64(0), Origin: run.s.Origin(), Seq: 1}})
		default:
			n := run.newRemote()
			if r.IntN(5) == 0 {
				run.held = append(run.held, n)
				continue
			}
			nodes = append(nodes, n)
		}
	}
	var adv []store.Advance
	if r.IntN(10) == 0 {
		o := uint64(11 + 11*r.IntN(2))
		from := run.m.vector[o]
		if from > 0 && r.IntN(3) == 0 {
			from-- // still covered
		} else if r.IntN(3) == 0 {
			from++ // not covered: ignored
		}
		adv = append(adv, store.Advance{Origin: o, From: from, To: run.nextSeq[o]})
	}
	desc := fmt.Sprintf("apply %d nodes %+v", len(nodes), adv)
	want := run.m.apply(run.s.Origin(), nodes, adv)
	got, err := run.s.Apply(context.Background(), nodes, adv)
	if err != nil || got != want {
		run.t.Fatalf("%s = %d, %v, want %d", desc, got, err, want)
	}
	run.outcomes[fmt.Sprintf("apply changed %d", min(got, 2))]++
	return desc
}

// newRemote returns a new write of a remote origin: a version near the
// clock, or tied with or just around the path's current one.
func (run *randomRun) newRemote() store.Node {
	r := run.r
	o := uint64(11 + 11*r.IntN(2))
	p := run.path()
	for {
		var v uint64
		cur := run.m.nodes[p].Version
		switch k := r.IntN(4); {
		case k == 0 && cur > 2:
			v = cur // a tie: the origin decides
		case k == 1 && cur > 2:
			v = cur - uint64(r.IntN(2)+1)
		default:
			wall := uint64(run.clock.Now().UnixMilli()+int64(r.IntN(20000)-10000)) << 16
			v = wall + uint64(r.IntN(3))
		}
		if run.versions[[2]uint64{o, v}] {
			continue
		}
		run.versions[[2]uint64{o, v}] = true
		run.nextSeq[o]++
		n := store.Node{Path: p, Meta: store.Meta{Version: v, Origin: o, Seq: run.nextSeq[o], Deleted: r.IntN(4) == 0}}
		if !n.Deleted {
			n.Data = run.data()
		}
		run.sent = append(run.sent, n)
		return n
	}
}

// compare checks Get, Lookup, Walk, Stats and Vector against the model.
func (run *randomRun) compare() error {
	s, m := run.s, run.m
	var stats store.Stats
	for _, p := range run.universe {
		want, ok := m.nodes[p]
		got, found := s.Lookup(p)
		if ok != found || got != want.Meta {
			return fmt.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", p, got, found, want.Meta, ok)
		}
		n, err := s.Get(p)
		switch {
		case !ok || want.Deleted:
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("Get(%q) = %+v, %v; want ErrNotFound", p, n, err)
			}
		case err != nil || string(n.Data) != string(want.Data) || n.Meta != want.Meta:
			return fmt.Errorf("Get(%q) = %+v, %v; want %+v", p, n, err, want)
		}
		switch {
		case !ok:
		case want.Deleted:
			stats.Tombstones++
		default:
			stats.Nodes++
			stats.Bytes += uint64(len(want.Data))
		}
	}
	var walked []string
	s.Walk("/", func(p string, _ store.Meta) bool {
		walked = append(walked, p)
		return true
	})
	if want := slices.Sorted(maps.Keys(m.nodes)); !slices.Equal(walked, want) {
		return fmt.Errorf("Walk(/) = %q, want %q", walked, want)
	}
	if got := s.Stats(); got != stats {
		return fmt.Errorf("Stats() = %+v, want %+v", got, stats)
	}
	if got := s.Vector(); !maps.Equal(got, m.vector) {
		return fmt.Errorf("Vector() = %v, want %v", got, m.vector)
	}
	return nil
}

var discard = slog.New(slog.DiscardHandler)

func BenchmarkStore_Write(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			cfg := store.DefaultConfig(b.TempDir() + "/store.db")
			cfg.NoSync = noSync
			cfg.Logger = discard
			s := openStore(b, cfg)
			data := []byte(strings.Repeat("d", 1024))
			var id atomic.Uint64
			b.SetBytes(int64(len(data)))
			// Many clients per CPU, as a server has.
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := id.Add(1)
					p := fmt.Sprintf("/bench/%d/%d", n%64, n)
					if _, err := s.Write(context.Background(), []store.Write{{Path: p, Data: data}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/float64(s.CommitCount()), "writes/commit")
		})
	}
}

func BenchmarkStore_Apply(b *testing.B) {
	const batch, paths = 1000, 20000
	cfg := store.DefaultConfig(b.TempDir() + "/store.db")
	cfg.Logger = discard
	s := openStore(b, cfg)
	data := []byte(strings.Repeat("d", 100))
	nodes := make([]store.Node, batch)
	seq := uint64(0)
	b.SetBytes(batch * int64(len(data)))
	b.ResetTimer()
	for i := range b.N {
		for j := range nodes {
			seq++
			nodes[j] = store.Node{
				Path: fmt.Sprintf("/bench/%d/%d", j%100, (i*batch+j)%paths),
				Meta: store.Meta{Version: seq, Origin: 7, Seq: seq},
				Data: data,
			}
		}
		if n, err := s.Apply(context.Background(), nodes, nil); err != nil || n != batch {
			b.Fatalf("Apply = %d, %v", n, err)
		}
	}
}

// TestStore_ChangesFollowsPathsFarApart: Changes finds every winner of a
// page whatever the distance between their paths, whether the next one is
// a few keys ahead (stepped to), far ahead or behind (sought).
func TestStore_ChangesFollowsPathsFarApart(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	s := openStore(t, storetest.Config(t, t.TempDir(), clock))
	ctx := context.Background()
	var ws []store.Write
	for i := range 20 {
		ws = append(ws, store.Write{Path: fmt.Sprintf("/p/%02d", i), Data: []byte("old")})
	}
	if _, err := s.Write(ctx, ws); err != nil {
		t.Fatal(err)
	}
	after := s.Vector()[s.Origin()]
	order := []string{"/p/00", "/p/01", "/p/19", "/p/03", "/p/10"}
	for _, p := range order {
		if _, err := s.Write(ctx, []store.Write{{Path: p, Data: []byte("new " + p)}}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, _, more, err := s.Changes(s.Origin(), after, 0, 0)
	if err != nil || more {
		t.Fatalf("Changes = %d nodes, more %v, %v", len(nodes), more, err)
	}
	var got []string
	for _, n := range nodes {
		if string(n.Data) != "new "+n.Path {
			t.Errorf("%s: data %q", n.Path, n.Data)
		}
		got = append(got, n.Path)
	}
	if !slices.Equal(got, order) {
		t.Errorf("Changes = %v, want %v", got, order)
	}
}
