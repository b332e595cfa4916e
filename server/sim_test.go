package server

// A seeded simulation of a cluster: the real replication code (the push
// sessions and sync rounds of the server's loops, with the claims of live
// push streams in digests and the incarnation checks, replicate.go and
// the Watch stream) and real stores, over an in-memory transport
// (simnet_test.go) that drops, duplicates and reorders messages, with
// partitions, crashes and restarts, restores from older copies of a
// server's store (which its start check must turn into a new
// incarnation), and skewed clocks that jump. After healing, eager push
// alone must bring each server's next write to every peer, every server
// must hold the last-write-wins result of all acknowledged writes, no
// server's version of a path may ever have decreased, and every watcher
// must hold exactly the live nodes under its prefix. The seeds together
// must have taken at least one new incarnation.
//
//	go test -run TestSimulation ./server/                      # default seeds
//	go test -run TestSimulation ./server/ -sim.seeds=5000      # more
//	go test -run TestSimulation ./server/ -sim.seed=1234 -v    # replay one

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/follow/followtest"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

var (
	simSeeds = flag.Int("sim.seeds", 0, "simulation seeds to run (0: 500, or 200 under -race)")
	simSeed  = flag.Uint64("sim.seed", 0, "run only this simulation seed")
	simSteps = flag.Int("sim.steps", 400, "steps per simulation seed")
	simTrace = flag.Bool("sim.trace", false, "log every step of the simulation")
)

func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		runSim(t, *simSeed)
		return
	}
	n := *simSeeds
	if n == 0 {
		n = 500
		if raceEnabled {
			n = 200
		}
		if testing.Short() {
			n = 10
		}
	}
	var restores, incarnations int
	for seed := uint64(1); seed <= uint64(n); seed++ {
		if !t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := runSim(t, seed)
			restores += s.restores
			incarnations += s.incarnations
		}) {
			t.Logf("replay with: go test -run TestSimulation ./server/ -sim.seed=%d -v", seed)
			return
		}
	}
	t.Logf("%d seeds: %d restores from a backup, %d new incarnations", n, restores, incarnations)
	// Restores are what the incarnation checks and the pushers' restart on
	// a new origin are for: a run without one tested neither.
	if incarnations == 0 {
		t.Errorf("no server took a new incarnation in %d seeds", n)
	}
}

// simServer is one server of the simulation: a real store, the Server
// around it (replication only: no RPCs, no membership), its clock skew, and
// its push session towards each peer.
type simServer struct {
	dir      string
	st       *store.Store // nil while crashed
	srv      *Server      // nil while crashed
	skew     atomic.Int64 // nanoseconds added to the simulation clock
	sessions map[int]*pushSession
	// backedUp says that dir holds a copy of the store file, taken when
	// the server last crashed with a backup (see crash).
	backedUp bool
	// origin is the store's origin when last looked at (countIncarnations).
	origin uint64
	// twin is, from a restore until a start check has run, the server
	// that holds all it held, crashes and restarts included; -1 otherwise
	// (see restore).
	twin int
}

// simMsg is a push message in flight on its stream.
type simMsg struct {
	stream *simPushStream
	msg    *repldspb.PushRequest
}

// simWatcher models a pull client: the follower's own protocol (follow.Start
// at each connection, follow.Handle for each message) into an in-memory
// sink, which applies a node only if newer than what it holds, deletes what
// a complete replay lacked, and resumes elsewhere from its last bookmark.
type simWatcher struct {
	prefix string
	server int // -1 when disconnected
	ws     *watchStream
	out    *simStream
	feed   *store.Feed
	sink   *followtest.MemSink
	// full: the session replays in full (see follow.Handle).
	full bool
}

// simStream is the in-memory end of a Watch stream.
type simStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*repldspb.WatchResponse
}

func (s *simStream) Context() context.Context { return s.ctx }

func (s *simStream) Send(m *repldspb.WatchResponse) error {
	s.msgs = append(s.msgs, m)
	return nil
}

type sim struct {
	t        *testing.T
	step     int
	rng      *rand.Rand
	ctx      context.Context
	log      *slog.Logger
	now      atomic.Int64 // simulation clock, Unix nanoseconds
	servers  []*simServer
	inflight []simMsg
	// streams are the push streams open (not broken).
	streams []*simPushStream
	// restores and incarnations count the restores from a backup and the
	// new incarnations servers took (see restore, countIncarnations).
	restores, incarnations int
	cut                    map[[2]int]bool
	// acked holds, per path, the winning acknowledged write: its metadata
	// and data (nil for a delete).
	acked     map[string]store.Meta
	ackedData map[string][]byte
	// seen is, per server and path, the highest version observed.
	seen     []map[string]store.Meta
	watchers []*simWatcher
	paths    []string
}

// runSim runs one seed and returns the simulation for its counts.
func runSim(t *testing.T, seed uint64) *sim {
	s := &sim{
		t:         t,
		rng:       rand.New(rand.NewPCG(seed, seed^0x5eed)),
		ctx:       context.Background(),
		log:       slog.New(slog.DiscardHandler),
		cut:       map[[2]int]bool{},
		acked:     map[string]store.Meta{},
		ackedData: map[string][]byte{},
	}
	s.now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	for i := range 8 {
		s.paths = append(s.paths, fmt.Sprintf("/k/%d", i), fmt.Sprintf("/d/%d", i))
	}
	n := 3 + s.rng.IntN(3)
	for i := range n {
		srv := &simServer{dir: t.TempDir(), twin: -1}
		srv.skew.Store(int64(s.rng.IntN(4000)-2000) * int64(time.Millisecond))
		s.servers = append(s.servers, srv)
		s.seen = append(s.seen, map[string]store.Meta{})
		s.start(i)
	}
	t.Cleanup(func() {
		for i := range s.servers {
			s.stop(i)
		}
	})
	for _, prefix := range []string{"/", "/d", "/k/3"} {
		w := &simWatcher{prefix: prefix, server: -1, sink: followtest.NewMemSink()}
		s.watchers = append(s.watchers, w)
		s.connect(w, s.rng.IntN(n))
	}

	for step := range *simSteps {
		s.step = step
		s.now.Add(int64(s.rng.IntN(50)) * int64(time.Millisecond))
		switch r := s.rng.IntN(100); {
		case r < 30:
			s.write(s.rng.IntN(n))
		case r < 45:
			s.push(s.rng.IntN(n), s.rng.IntN(n))
		case r < 70:
			s.deliver(true)
		case r < 82:
			s.sync(s.rng.IntN(n), s.rng.IntN(n), true)
		case r < 85:
			s.crash(s.rng.IntN(n))
		case r < 89:
			s.start(s.rng.IntN(n))
		case r < 92:
			a, b := s.rng.IntN(n), s.rng.IntN(n)
			s.cut[link(a, b)] = !s.cut[link(a, b)]
		case r < 94:
			// A clock jumps, forwards or back.
			s.servers[s.rng.IntN(n)].skew.Add(int64(s.rng.IntN(6000)-3000) * int64(time.Millisecond))
		case r < 97:
			w := s.watchers[s.rng.IntN(len(s.watchers))]
			s.disconnect(w)
			s.connect(w, s.rng.IntN(n))
		case r < 98:
			s.orphan(s.rng.IntN(n))
		default:
			s.restore(s.rng.IntN(n))
		}
		// Start checks run concurrently with the rest of the server.
		for i := range n {
			if s.rng.IntN(3) == 0 {
				s.startCheck(i)
			}
		}
		s.countIncarnations()
		s.drainWatchers()
		s.checkMonotonic(step)
		if t.Failed() {
			return s
		}
	}
	s.heal()
	return s
}

// tracef logs a step with -sim.trace.
func (s *sim) tracef(format string, args ...any) {
	if *simTrace {
		s.t.Logf("%d: "+format, append([]any{s.step}, args...)...)
	}
}

func link(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

func (s *sim) reachable(a, b int) bool {
	return a != b && s.servers[a].st != nil && s.servers[b].st != nil && !s.cut[link(a, b)]
}

// start opens server i's store (again, after a crash).
func (s *sim) start(i int) {
	srv := s.servers[i]
	if srv.st != nil {
		return
	}
	cfg := store.DefaultConfig(s.dbPath(i))
	cfg.NoSync = true
	cfg.Logger = s.log
	cfg.Now = func() time.Time { return time.Unix(0, s.now.Load()+srv.skew.Load()) }
	st, err := store.Open(cfg)
	if err != nil {
		s.t.Fatalf("open server %d: %v", i, err)
	}
	srv.st = st
	srv.srv = &Server{cfg: Config{Name: strconv.Itoa(i)}, log: s.log, store: st, now: cfg.Now, checked: make(chan struct{}), stopping: context.Background()}
	srv.srv.metrics = newMetrics(srv.srv)
	srv.srv.peers = newPeerSet(srv.srv, &simTransport{sim: s, from: i})
	// A restarted pusher starts from the head: sync fills what it missed.
	srv.sessions = map[int]*pushSession{}
	srv.origin = st.Origin()
	// Its pushers start at once, before its start check has run: on the
	// origin it has now.
	for j := range s.servers {
		if s.reachable(i, j) {
			s.push(i, j)
		}
	}
}

// startCheck runs server i's start check (Server.startCheck), which a
// started server runs concurrently with its pushers and sync rounds, and
// which its writes wait for: the peers it reaches say what they have seen
// of its writes. After a restore it waits until the server reaches the
// twin that holds everything it held (see restore); in production it
// would give up after startCheckTimeout and write anyway.
func (s *sim) startCheck(i int) {
	srv := s.servers[i]
	if srv.st == nil || srv.checked() || (srv.twin >= 0 && !s.reachable(i, srv.twin)) {
		return
	}
	s.tracef("start check of %d", i)
	var peers []peerClient
	for j := range s.servers {
		if j != i {
			peers = append(peers, &simPeer{sim: s, from: i, to: j})
		}
	}
	srv.srv.checkPeersSeen(s.ctx, peers)
	close(srv.srv.checked)
	srv.twin = -1
}

// checked reports whether the server's start check has run: its Writer
// writes only then.
func (srv *simServer) checked() bool {
	select {
	case <-srv.srv.checked:
		return true
	default:
		return false
	}
}

// countIncarnations counts the servers whose origin changed since the
// last call: by their start check or a sync round's check. Their backup,
// of an older incarnation, is dropped: restored, it would take back an
// origin whose writes its twin may not have all seen (the server caught
// up with them from its peers, maybe not yet all), and the start check
// could miss seqs a watcher has passed.
func (s *sim) countIncarnations() {
	for i, srv := range s.servers {
		if srv.st != nil && srv.st.Origin() != srv.origin {
			s.tracef("server %d takes a new incarnation", i)
			s.incarnations++
			srv.origin = srv.st.Origin()
			srv.backedUp = false
		}
	}
}

// crash stops server i; its watchers lose their streams. Half the crashes
// leave a copy of the store file for a later restore, replacing the one
// before.
func (s *sim) crash(i int) {
	if s.servers[i].st == nil {
		return
	}
	s.tracef("crash %d", i)
	s.stop(i)
	if s.rng.IntN(2) == 0 {
		s.backup(i)
	}
}

func (s *sim) dbPath(i int) string     { return filepath.Join(s.servers[i].dir, "replds.db") }
func (s *sim) backupPath(i int) string { return filepath.Join(s.servers[i].dir, "backup.db") }

// backup copies the store file of stopped server i, as a backup would:
// only the pages in use (bbolt Tx.CopyFile), not the free space bbolt
// allocated ahead (16 MiB).
func (s *sim) backup(i int) {
	s.tracef("backup %d", i)
	db, err := bolt.Open(s.dbPath(i), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		s.t.Fatalf("backup %d: %v", i, err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error { return tx.CopyFile(s.backupPath(i), 0o600) }); err != nil {
		s.t.Fatalf("backup %d: %v", i, err)
	}
	s.servers[i].backedUp = true
}

// restore restarts server i from its backup, as an operator restores one:
// the peers may have seen more of its own writes than it then holds, and
// its start check (startCheck) must take a new incarnation for its next
// writes to spread. So that no acknowledged write is lost, a peer it
// reaches first takes every node it holds (sync rounds both ways, its push
// streams to that peer cut so that the rounds carry everything); that
// peer has then seen all that any server or watcher has of its writes,
// and the start check asks it.
func (s *sim) restore(i int) {
	srv := s.servers[i]
	if !srv.backedUp || slices.ContainsFunc(s.servers, func(o *simServer) bool { return o.twin == i }) {
		return // i is a pending start check's twin: it must keep what it holds
	}
	s.start(i)
	var reached []int
	for j := range s.servers {
		if s.reachable(i, j) {
			reached = append(reached, j)
		}
	}
	if len(reached) == 0 {
		return
	}
	j := reached[s.rng.IntN(len(reached))]
	for _, ps := range slices.Clone(s.streams) {
		if ps.from == i && ps.to == j {
			ps.cut()
		}
	}
	twin := func() bool {
		own := srv.st.Origin()
		return s.servers[j].st.Root() == srv.st.Root() && s.servers[j].st.Vector()[own] >= srv.st.Vector()[own]
	}
	for range 3 {
		if twin() {
			break
		}
		s.sync(j, i, false)
		s.sync(i, j, false)
	}
	if !twin() {
		return
	}
	s.tracef("restore %d from its backup (server %d holds the same nodes)", i, j)
	s.restores++
	s.stop(i)
	s.copyFile(s.backupPath(i), s.dbPath(i))
	// Its versions go back, legitimately: they come back from the peers.
	clear(s.seen[i])
	s.start(i)
	srv.twin = j
}

// copyFile copies a store file.
func (s *sim) copyFile(from, to string) {
	src, err := os.Open(from)
	if err != nil {
		s.t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		s.t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		s.t.Fatal(err)
	}
}

// stop closes server i; its watchers lose their streams.
func (s *sim) stop(i int) {
	srv := s.servers[i]
	if srv.st == nil {
		return
	}
	for _, w := range s.watchers {
		if w.server == i {
			s.disconnect(w)
		}
	}
	for _, ps := range slices.Clone(s.streams) {
		if ps.from == i || ps.to == i {
			ps.cut()
		}
	}
	if err := srv.st.Close(); err != nil {
		s.t.Errorf("close server %d: %v", i, err)
	}
	srv.st, srv.srv, srv.sessions = nil, nil, nil
}

// write makes a client write a random batch on server i and records what
// was acknowledged.
func (s *sim) write(i int) {
	srv := s.servers[i]
	if srv.st == nil || !srv.checked() {
		return // its Writer waits for the start check
	}
	var ws []store.Write
	data := map[string][]byte{}
	if s.rng.IntN(10) == 0 {
		ws = append(ws, store.Write{Path: "/d", Delete: true, Recursive: true})
	} else {
		used := map[string]bool{}
		for range 1 + s.rng.IntN(3) {
			p := s.paths[s.rng.IntN(len(s.paths))]
			if used[p] {
				continue
			}
			used[p] = true
			if s.rng.IntN(5) == 0 {
				ws = append(ws, store.Write{Path: p, Delete: true})
				continue
			}
			d := []byte(fmt.Sprintf("v%d", s.rng.IntN(4)))
			data[p] = d
			ws = append(ws, store.Write{Path: p, Data: d})
		}
	}
	nodes, err := srv.srv.Writer().Write(s.ctx, ws)
	if errors.Is(err, store.ErrClockSkew) {
		return // refused: nothing was acknowledged
	}
	if err != nil {
		s.t.Fatalf("write on server %d: %v", i, err)
	}
	for _, n := range nodes {
		s.tracef("write on %d: %s v%d o%x s%d deleted=%v", i, n.Path, n.Version, n.Origin, n.Seq, n.Deleted)
		if cur, ok := s.acked[n.Path]; !ok || n.Meta.Newer(cur) {
			s.acked[n.Path] = n.Meta
			s.ackedData[n.Path] = nil
			if !n.Deleted {
				s.ackedData[n.Path] = data[n.Path]
			}
		}
	}
}

// push makes server a's pusher towards b send its next page, on its push
// session, opened first when there is none (or it broke). It reports
// whether more pages wait.
func (s *sim) push(a, b int) bool {
	src := s.servers[a]
	if src.st == nil || a == b {
		return false
	}
	ps := src.sessions[b]
	if ps == nil || ps.stream.(*simPushStream).broken() {
		peer, err := src.srv.peers.tr.peer(strconv.Itoa(b))
		if err != nil {
			s.t.Fatal(err)
		}
		if ps, err = openPushSession(s.ctx, src.st, peer); err != nil {
			delete(src.sessions, b)
			return false
		}
		src.sessions[b] = ps
	}
	msg, more, err := ps.sendNext()
	if err != nil {
		s.tracef("push %d->%d ends: %v", a, b, err)
		delete(src.sessions, b)
		return false
	}
	if msg != nil {
		s.tracef("push %d->%d prev %d, %d nodes", a, b, msg.Prev, len(msg.Nodes))
	}
	return more
}

// deliver delivers one random message in flight (so messages overtake
// each other); when lossy, some are dropped, which breaks their stream.
func (s *sim) deliver(lossy bool) {
	if len(s.inflight) == 0 {
		return
	}
	k := s.rng.IntN(len(s.inflight))
	m := s.inflight[k]
	s.inflight = slices.Delete(s.inflight, k, k+1)
	ps := m.stream
	if ps.broken() {
		return
	}
	if !s.reachable(ps.from, ps.to) || (lossy && s.rng.IntN(10) == 0) {
		ps.cut()
		return
	}
	s.tracef("deliver push %d->%d prev %d, %d nodes", ps.from, ps.to, m.msg.Prev, len(m.msg.Nodes))
	if err := ps.srv.receivePush(s.ctx, ps.in, m.msg); err != nil {
		s.t.Fatalf("apply push %d->%d: %v", ps.from, ps.to, err)
	}
}

// sync runs a digest round of a against b, as a's sync loop does. When
// lossy, the answer may be cut short, as by a broken stream.
func (s *sim) sync(a, b int, lossy bool) {
	if !s.reachable(a, b) {
		return
	}
	asker, responder := s.servers[a], s.servers[b]
	claims := asker.srv.inbound.claims(asker.srv.now())
	before := responder.st.Vector()
	peer := &simPeer{sim: s, from: a, to: b, lossy: lossy}
	_, err := asker.srv.syncWith(s.ctx, peer, nil)
	if errors.Is(err, errSimNetwork) {
		return
	}
	if err != nil {
		s.t.Fatalf("sync %d<-%d: %v", a, b, err)
	}
	// A complete round brings the asker up to the responder's vector,
	// except for what a live push stream into the asker vouches to bring:
	// writes of its origin after the seq the stream started at.
	after := asker.st.Vector()
	for o, v := range before {
		want := v
		if since, ok := claims[o]; ok {
			want = min(v, since)
		}
		if after[o] < want {
			s.t.Fatalf("sync %d<-%d: origin %x at %d after the round, want at least %d (responder %d, claimed since %v)", a, b, o, after[o], want, v, claims)
		}
	}
}

// orphan puts a node on server i that no vector accounts for, as a restore
// from an old backup would: only hash-tree repair can spread it. It is an
// acknowledged write like any other.
func (s *sim) orphan(i int) {
	st := s.servers[i].st
	if st == nil {
		return
	}
	p := s.paths[s.rng.IntN(len(s.paths))]
	n := store.Node{
		Path: p,
		Meta: store.Meta{Version: uint64(s.now.Load()/int64(time.Millisecond)) << 16, Origin: 1 + s.rng.Uint64N(1000), Seq: 1 << 40, Size: 1},
		Data: []byte("o"),
	}
	if _, err := st.Apply(s.ctx, []store.Node{n}, nil); err != nil {
		s.t.Fatalf("orphan on %d: %v", i, err)
	}
	if cur, ok := s.acked[p]; !ok || n.Meta.Newer(cur) {
		s.acked[p] = n.Meta
		s.ackedData[p] = n.Data
	}
}

// connect opens a Watch stream of w on server i, resuming from w's token,
// and runs its replay.
func (s *sim) connect(w *simWatcher, i int) {
	st := s.servers[i].st
	if st == nil {
		return
	}
	token, full, err := follow.Start(s.ctx, w.sink)
	if err != nil {
		s.t.Fatalf("watcher start: %v", err)
	}
	s.tracef("watcher %s connects to %d with token %v, holding %d", w.prefix, i, wire.VectorFromProto(token), len(w.sink.Live()))
	w.server, w.full = i, full
	w.out = &simStream{ctx: s.ctx}
	w.ws = &watchStream{
		s:      &Server{store: st, log: s.log},
		stream: w.out,
		roots:  []string{w.prefix},
		token:  wire.VectorFromProto(token),
	}
	feed, err := w.ws.openFeed()
	if err != nil {
		s.t.Fatalf("watch feed: %v", err)
	}
	w.feed = feed
	s.pump(w)
	s.receive(w)
}

// pump sends what w's feed has without waiting, as the stream's loop does.
func (s *sim) pump(w *simWatcher) {
	for {
		page, ok, err := w.feed.TryNext()
		if err != nil {
			s.t.Fatalf("watch feed: %v", err)
		}
		if !ok {
			return
		}
		if err := w.ws.send(page); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *sim) disconnect(w *simWatcher) {
	if w.feed != nil {
		w.feed.Close()
	}
	w.server, w.feed, w.ws = -1, nil, nil
}

// drainWatchers passes every committed batch to the watch streams, as
// their live loops do, and lets the watchers apply what was sent.
func (s *sim) drainWatchers() {
	for _, w := range s.watchers {
		if w.feed == nil {
			continue
		}
		s.pump(w)
		s.receive(w)
	}
}

// receive hands what w's stream sent to its sink, as the follower does.
func (s *sim) receive(w *simWatcher) {
	for _, m := range w.out.msgs {
		for _, n := range m.Nodes {
			if !nodepath.Under(n.Path, w.prefix) {
				s.t.Fatalf("watch of %s sent %s", w.prefix, n.Path)
			}
			s.tracef("watcher %s on %d gets %s v%d o%x s%d deleted=%v", w.prefix, w.server, n.Path, n.Version, n.Origin, n.Seq, n.Deleted)
		}
		if m.Bookmark != nil {
			s.tracef("watcher %s on %d bookmark %v", w.prefix, w.server, wire.VectorFromProto(m.Bookmark))
		}
		if _, err := follow.Handle(s.ctx, w.sink, m, &w.full); err != nil {
			s.t.Fatalf("watcher of %s: %v", w.prefix, err)
		}
	}
	w.out.msgs = nil
}

// checkMonotonic fails if any server's version of any path went down.
func (s *sim) checkMonotonic(step int) {
	for i, srv := range s.servers {
		if srv.st == nil {
			continue
		}
		for _, p := range s.paths {
			m, ok := srv.st.Lookup(p)
			if !ok {
				if prev, had := s.seen[i][p]; had {
					s.t.Fatalf("step %d: server %d lost %s (had version %d)", step, i, p, prev.Version)
				}
				continue
			}
			if prev, had := s.seen[i][p]; had && prev.Newer(m) {
				s.t.Fatalf("step %d: server %d: %s went from version %d/%x back to %d/%x", step, i, p, prev.Version, prev.Origin, m.Version, m.Origin)
			}
			s.seen[i][p] = m
		}
	}
}

// checkPushes checks that eager push alone delivers a write to every peer
// once the network is whole, a new incarnation included: each server's
// pushers restart on its current origin (a session of an older one ends
// with errNewIncarnation), then it writes a marker, which its pushes must
// bring to every peer, with no sync round.
func (s *sim) checkPushes() {
	n := len(s.servers)
	for range 2 {
		// The first pass ends sessions of an older origin, the second
		// opens new ones at the head.
		for a := range n {
			for b := range n {
				for s.push(a, b) {
				}
			}
		}
	}
	markers := map[int]store.Node{}
	for a, srv := range s.servers {
		p := fmt.Sprintf("/k/%d", a)
		nodes, err := srv.srv.Writer().Write(s.ctx, []store.Write{{Path: p, Data: []byte("marker")}})
		if errors.Is(err, store.ErrClockSkew) {
			continue
		}
		if err != nil || len(nodes) != 1 {
			s.t.Fatalf("marker on %d: %v, %v", a, nodes, err)
		}
		if cur, ok := s.acked[p]; !ok || nodes[0].Meta.Newer(cur) {
			s.acked[p], s.ackedData[p] = nodes[0].Meta, []byte("marker")
		}
		markers[a] = nodes[0]
	}
	for a := range n {
		for b := range n {
			for s.push(a, b) {
			}
		}
	}
	for len(s.inflight) > 0 {
		s.deliver(false)
	}
	for a, m := range markers {
		for b, srv := range s.servers {
			if got, ok := srv.st.Lookup(m.Path); b != a && (!ok || m.Meta.Newer(got)) {
				s.t.Errorf("server %d: %s = %+v after pushes, want server %d's marker %+v (origin now %x)", b, m.Path, got, a, m.Meta, s.servers[a].st.Origin())
			}
		}
	}
}

// heal restarts every server, ends partitions and loss, lets the network
// settle, then checks the outcome.
func (s *sim) heal() {
	for i := range s.servers {
		s.start(i)
	}
	clear(s.cut)
	for i := range s.servers {
		s.startCheck(i)
	}
	s.countIncarnations()
	for len(s.inflight) > 0 {
		s.deliver(false)
	}
	n := len(s.servers)
	s.checkPushes()
	converged := false
	for round := 0; round < 10 && !converged; round++ {
		// Time passes between rounds, as between the loops' sync rounds:
		// a stream that delivered nothing lately is claimed no more (its
		// last message vouches only up to its last node; see pushFresh).
		s.now.Add(int64(pushFresh + time.Second))
		// The pushers run as the loops do: each sends all it has, on a
		// stream that stays up, so the claims in digests stay valid.
		for a := range n {
			for b := range n {
				for s.push(a, b) {
				}
			}
		}
		for len(s.inflight) > 0 {
			s.deliver(false)
		}
		for a := range n {
			for b := range n {
				s.sync(a, b, false)
			}
		}
		converged = true
		for i := 1; i < n; i++ {
			if s.servers[i].st.Root() != s.servers[0].st.Root() {
				converged = false
			}
		}
	}
	if !converged {
		for i, srv := range s.servers {
			s.t.Logf("server %d origin %x vector %v claims %v root %x", i, srv.st.Origin(), srv.st.Vector(), srv.srv.inbound.claims(srv.srv.now()), srv.st.Root())
		}
		s.t.Fatalf("servers did not converge after 10 full sync rounds")
	}
	s.drainWatchers()
	s.checkMonotonic(-1)
	for i, srv := range s.servers {
		for p, want := range s.acked {
			got, ok := srv.st.Lookup(p)
			if !ok || got.Version != want.Version || got.Origin != want.Origin || got.Deleted != want.Deleted {
				s.t.Errorf("server %d: %s = %+v (present %v), want the last acknowledged write %+v", i, p, got, ok, want)
				continue
			}
			if !want.Deleted {
				n, err := srv.st.Get(p)
				if err != nil || !bytes.Equal(n.Data, s.ackedData[p]) {
					s.t.Errorf("server %d: %s = %q (%v), want %q", i, p, n.Data, err, s.ackedData[p])
				}
			}
		}
		srv.st.Walk("/", func(p string, m store.Meta) bool {
			if _, ok := s.acked[p]; !ok {
				s.t.Errorf("server %d holds %s, never written", i, p)
			}
			return true
		})
	}
	for _, w := range s.watchers {
		if w.feed == nil {
			s.connect(w, s.rng.IntN(n))
			s.drainWatchers()
		}
		held := w.sink.Live()
		for p, want := range s.acked {
			if !nodepath.Under(p, w.prefix) {
				continue
			}
			data, live := held[p]
			if live != !want.Deleted || (live && data != string(s.ackedData[p])) {
				s.t.Errorf("watcher of %s: %s = %q (live %v), want %+v %q", w.prefix, p, data, live, want, s.ackedData[p])
			}
		}
		for p := range held {
			if want, ok := s.acked[p]; !ok || want.Deleted {
				s.t.Errorf("watcher of %s holds %s, which is not a live acknowledged node", w.prefix, p)
			}
		}
	}
}
