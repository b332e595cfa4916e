// Package storetest is a conformance suite for implementations of the store
// API, and the fakes their tests share.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/store"
)

// Store is the API the suite exercises, as *store.Store provides it. All
// methods must be safe for concurrent use.
type Store interface {
	Origin() uint64
	Write(ctx context.Context, ws []store.Write) ([]store.Node, error)
	Apply(ctx context.Context, nodes []store.Node, adv []store.Advance) (int, error)
	Get(path string) (store.Node, error)
	Lookup(path string) (store.Meta, bool)
	Walk(prefix string, fn func(path string, m store.Meta) bool)
	Scan(opts store.ScanOptions) ([]store.Node, string, error)
	Snapshot(ctx context.Context, opts store.ScanOptions, fn func(vec store.Vector, page []store.Node) error) error
	Changes(origin, after uint64, maxNodes, maxBytes int) ([]store.Node, uint64, bool, error)
	Vector() store.Vector
	Root() store.Hash
	TreeChildren(level, index int) []store.Hash
	Bucket(b int) ([]store.Node, error)
	Subscribe(buf int) *store.Subscription
	Feed(opts store.FeedOptions) (*store.Feed, error)
	Stats() store.Stats
	Reincarnate(ctx context.Context) (old, new uint64, err error)
	Close() error
}

var _ Store = (*store.Store)(nil)

// CommitCounter is an optional capability: the number of storage
// transactions committed since open. With it the suite checks that
// concurrent writes are group-committed.
type CommitCounter interface {
	CommitCount() uint64
}

// Checker is an optional capability: a check that the store's in-memory
// state matches its storage, run by the suite before every close. It is
// called only while no Write or Apply is in flight.
type Checker interface {
	CheckConsistency() error
}

// Opener opens the store described by cfg, creating it if needed, and
// fails t if it cannot. The suite chooses cfg.Path (a file in a temporary
// directory, opened again to test durability), cfg.Now, the limits and the
// logger; the opener honours them. The suite closes every store it opens.
type Opener func(t *testing.T, cfg store.Config) Store

// Suite limits, small enough to test cheaply.
const (
	MaxNodeSize   = 1 << 10
	MaxBatch      = 64
	MaxBatchBytes = 8 << 10
)

// Clock is a settable fake wall clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d, backwards if d is negative.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Epoch is where the suite's clocks start.
var Epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Config returns the configuration the suite opens stores with: a file in
// dir, the clock, the suite limits and a logger writing to t's output.
func Config(t testing.TB, dir string, clock *Clock) store.Config {
	cfg := store.DefaultConfig(filepath.Join(dir, "store.db"))
	cfg.Now = clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.MaxNodeSize = MaxNodeSize
	cfg.MaxBatch = MaxBatch
	cfg.MaxBatchBytes = MaxBatchBytes
	return cfg
}

// NodeHash computes the hash-tree digest of a node as the store defines it:
// the first 16 bytes of sha256(path || 0 || version || origin || deleted).
func NodeHash(path string, m store.Meta) store.Hash {
	buf := make([]byte, 0, len(path)+18)
	buf = append(buf, path...)
	buf = append(buf, 0)
	buf = binary.BigEndian.AppendUint64(buf, m.Version)
	buf = binary.BigEndian.AppendUint64(buf, m.Origin)
	if m.Deleted {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	sum := sha256.Sum256(buf)
	return store.Hash(sum[:16])
}

// BucketOf returns the hash-tree leaf bucket of path.
func BucketOf(path string) int {
	sum := sha256.Sum256([]byte(path))
	return int(binary.BigEndian.Uint16(sum[:2]))
}

// env is one store under test with its clock and configuration.
type env struct {
	t     *testing.T
	open  Opener
	cfg   store.Config
	clock *Clock
	s     Store
}

// newEnv opens a fresh store in a temporary directory; cleanup checks and
// closes it.
func newEnv(t *testing.T, open Opener) *env {
	t.Helper()
	clock := NewClock(Epoch)
	e := &env{t: t, open: open, cfg: Config(t, t.TempDir(), clock), clock: clock}
	e.s = open(t, e.cfg)
	t.Cleanup(func() {
		e.check()
		if err := e.s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return e
}

// check runs the store's own consistency check, if it has one.
func (e *env) check() {
	e.t.Helper()
	if c, ok := e.s.(Checker); ok {
		if err := c.CheckConsistency(); err != nil {
			e.t.Errorf("consistency: %v", err)
		}
	}
}

// reopen closes the store and opens the same file again.
func (e *env) reopen() {
	e.t.Helper()
	e.check()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("Close() = %v", err)
	}
	e.s = e.open(e.t, e.cfg)
}

// write runs Write and fails the test on error.
func (e *env) write(ws ...store.Write) []store.Node {
	e.t.Helper()
	got, err := e.s.Write(context.Background(), ws)
	if err != nil {
		e.t.Fatalf("Write(%s) = %v", describe(ws), err)
	}
	return got
}

// put writes data at each path, one batch.
func (e *env) put(kv ...string) []store.Node {
	e.t.Helper()
	var ws []store.Write
	for i := 0; i+1 < len(kv); i += 2 {
		ws = append(ws, store.Write{Path: kv[i], Data: []byte(kv[i+1])})
	}
	return e.write(ws...)
}

// apply runs Apply and fails the test on error.
func (e *env) apply(nodes []store.Node, adv ...store.Advance) int {
	e.t.Helper()
	n, err := e.s.Apply(context.Background(), nodes, adv)
	if err != nil {
		e.t.Fatalf("Apply(%d nodes) = %v", len(nodes), err)
	}
	return n
}

// mustGet returns the live node at path and fails the test if there is none.
func (e *env) mustGet(path string) store.Node {
	e.t.Helper()
	n, err := e.s.Get(path)
	if err != nil {
		e.t.Fatalf("Get(%q) = %v", path, err)
	}
	return n
}

// walk returns what Walk reports under prefix.
func walk(s Store, prefix string) []store.Node {
	var out []store.Node
	s.Walk(prefix, func(path string, m store.Meta) bool {
		out = append(out, store.Node{Path: path, Meta: m})
		return true
	})
	return out
}

func describe(ws []store.Write) string {
	out := "["
	for i, w := range ws {
		if i > 0 {
			out += " "
		}
		switch {
		case w.Delete && w.Recursive:
			out += "rm -r " + w.Path
		case w.Delete:
			out += "rm " + w.Path
		default:
			out += w.Path
		}
	}
	return out + "]"
}
