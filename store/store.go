package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"github.com/replds/replds/nodepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	radix "github.com/armon/go-radix"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Scan and Changes page defaults.
const (
	defaultPageNodes = 1000
	defaultPageBytes = 4 << 20
)

// openTimeout bounds the wait for the bbolt file lock, so that a second
// process opening the same file fails instead of hanging.
const openTimeout = 5 * time.Second

// initialMmapSize is the address space bbolt maps up front. A write
// transaction that grows the file past the mapping remaps it, which copies
// every node the transaction touched out of the old mapping and waits for
// all read transactions to end: mapping generously (address space, not
// memory) keeps large batches fast and writers from stalling behind
// readers. 32-bit platforms keep bbolt's default.
func initialMmapSize() int {
	size := int64(8) << 30
	if int64(math.MaxInt) < size {
		return 0
	}
	return int(size)
}

// Store is a tree of nodes kept in a bbolt file, with the metadata, the hash
// tree and the replication state mirrored in memory. All methods are safe
// for concurrent use. Writes and Applies are serialized through one
// committer goroutine that group-commits them; reads of metadata are served
// from memory, reads of data from short bbolt read transactions.
type Store struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	db  *bolt.DB
	// origin is written by the committer goroutine only (Open,
	// Reincarnate), under mu; others read it under mu.
	origin uint64

	// reqs is unbuffered: a request is either taken by the committer, which
	// then always answers it, or not sent at all (see submit).
	reqs      chan *request
	reinc     chan chan reincarnation
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	// commits counts successful bbolt write transactions (CommitCount).
	commits atomic.Uint64
	// failCommit, when set by a test, replaces the result of tx.Commit.
	failCommit atomic.Pointer[func() error]

	// mu guards the in-memory state. Only the committer changes it, under
	// the write lock, so the committer reads it without locking.
	mu   sync.RWMutex
	tree *radix.Tree // path -> *entry, tombstones included
	slab []entry     // unused tail of the slab newEntry allocates from
	hash *hashTree
	// buckets[b] holds the paths of hash-tree leaf bucket b, in no order
	// (see indexBucket): Bucket reads one bucket without walking the tree. The
	// strings share their bytes with the radix tree's keys, so the index
	// costs a string header per node.
	buckets    [][]string
	stats      Stats
	vector     Vector
	lastIssued uint64 // highest HLC value issued or absorbed

	// subMu guards the subscriptions. The committer holds it across a
	// commit whose events it published early, and takes mu under it:
	// never take subMu while holding mu.
	subMu      sync.Mutex
	subs       map[*Subscription]struct{} // guarded by subMu
	subsClosed bool                       // guarded by subMu

	written notifier // see Written
}

// entry is the value of a path in the radix tree: the node's metadata and
// its hash-tree bucket (bucketOf, cached), packed into 32 bytes. The tree
// holds pointers into slabs of entries (newEntry): an interface holding a
// pointer needs no allocation of its own, so a node costs 32 bytes here
// rather than a separately allocated, boxed 48-byte value, and the slabs
// hold no pointers for the garbage collector to scan. An entry changes in
// place, under Store.mu, when its path gets a new version; nothing outside
// the lock keeps a pointer to one.
type entry struct {
	version, origin, seq uint64
	size                 uint32
	bucket               uint16
	deleted              bool
}

// entrySlab is how many entries newEntry allocates at once.
const entrySlab = 1024

// newEntry returns a zero entry from the current slab. The caller holds mu
// for writing (or is load). Entries are never freed one by one: the store
// never forgets a path (tombstones stay).
func (s *Store) newEntry() *entry {
	if len(s.slab) == 0 {
		s.slab = make([]entry, entrySlab)
	}
	e := &s.slab[0]
	s.slab = s.slab[1:]
	return e
}

func (e *entry) meta() Meta {
	return Meta{Version: e.version, Origin: e.origin, Seq: e.seq, Deleted: e.deleted, Size: e.size}
}

func (e *entry) setMeta(m Meta) {
	e.version, e.origin, e.seq, e.deleted, e.size = m.Version, m.Origin, m.Seq, m.Deleted, m.Size
}

// Open opens or creates the store file cfg.Path, rebuilds the in-memory
// state from it and starts the committer. The caller must Close the store.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout:         openTimeout,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		NoSync:          cfg.NoSync,
		InitialMmapSize: initialMmapSize(),
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	s := &Store{
		cfg:     cfg,
		log:     log.With("component", "store"),
		now:     now,
		db:      db,
		reqs:    make(chan *request),
		reinc:   make(chan chan reincarnation),
		closing: make(chan struct{}),
		tree:    radix.New(),
		hash:    newHashTree(),
		buckets: make([][]string, TreeLeaves),
		vector:  make(Vector),
		subs:    make(map[*Subscription]struct{}),
	}
	if err := db.Update(s.load); err != nil {
		// The load error is what the caller needs; a close error on top of
		// it would only hide it.
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	s.wg.Add(1)
	go s.run()
	s.log.Info("store opened", "path", cfg.Path, "origin", s.origin,
		"nodes", s.stats.Nodes, "bytes", s.stats.Bytes, "tombstones", s.stats.Tombstones,
		"took", time.Since(start))
	return s, nil
}

// load initializes a new file or checks an existing one, and rebuilds the
// in-memory state from it. It runs before the committer starts.
func (s *Store) load(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketNodes, bucketLog, bucketState, bucketVector} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	state := tx.Bucket(bucketState)
	if v := state.Get(keyFormat); v == nil {
		if err := state.Put(keyFormat, u64(formatVersion)); err != nil {
			return fmt.Errorf("put format: %w", err)
		}
	} else if f, err := decodeU64(v); err != nil || f != formatVersion {
		return fmt.Errorf("unsupported file format %x", v)
	}

	if v := state.Get(keyOrigin); v != nil {
		o, err := decodeU64(v)
		if err != nil || o == 0 {
			return fmt.Errorf("bad origin %x", v)
		}
		s.origin = o
	} else {
		o, err := newOrigin()
		if err != nil {
			return err
		}
		if err := state.Put(keyOrigin, u64(o)); err != nil {
			return fmt.Errorf("put origin: %w", err)
		}
		s.origin = o
	}
	if v := state.Get(keyHLC); v != nil {
		h, err := decodeU64(v)
		if err != nil {
			return fmt.Errorf("bad clock: %w", err)
		}
		s.lastIssued = h
	}

	vec, err := readVector(tx)
	if err != nil {
		return err
	}
	s.vector = vec

	return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
		path := string(k)
		m, _, err := decodeNode(v)
		if err != nil {
			return fmt.Errorf("node %s: %w", nodepath.Quote(path), err)
		}
		s.insert(path, m)
		return nil
	})
}

// newOrigin returns a random non-zero incarnation id.
func newOrigin() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random origin: %w", err)
		}
		if o := binary.BigEndian.Uint64(b[:]); o != 0 {
			return o, nil
		}
	}
}

// insert sets the metadata of path in the radix tree, the hash tree and the
// stats. The caller holds mu for writing (or is load).
func (s *Store) insert(path string, m Meta) {
	var e *entry
	if v, ok := s.tree.Get(path); ok {
		e = v.(*entry)
		old := e.meta()
		s.hash.toggle(int(e.bucket), nodeHash(path, old))
		s.stats.remove(old)
	} else {
		e = s.newEntry()
		e.bucket = uint16(bucketOf(path))
		s.tree.Insert(path, e)
		s.indexBucket(int(e.bucket), path)
	}
	e.setMeta(m)
	s.hash.toggle(int(e.bucket), nodeHash(path, m))
	s.stats.add(m)
}

// indexBucket adds a new path to the index of bucket b. Paths are never
// removed: the store never forgets one (tombstones stay). Bucket sorts
// what it returns, so that adding costs no comparison. The caller holds
// mu for writing (or is load).
func (s *Store) indexBucket(b int, path string) {
	s.buckets[b] = append(s.buckets[b], path)
}

// add counts node m in st.
func (st *Stats) add(m Meta) {
	if m.Deleted {
		st.Tombstones++
		return
	}
	st.Nodes++
	st.Bytes += uint64(m.Size)
}

// remove uncounts node m from st.
func (st *Stats) remove(m Meta) {
	if m.Deleted {
		st.Tombstones--
		return
	}
	st.Nodes--
	st.Bytes -= uint64(m.Size)
}

// Close stops the store: requests not yet taken by the committer fail with
// ErrClosed, a commit in progress completes, subscriptions are closed and the
// file is closed last. Later calls on the store return ErrClosed where they
// return an error. Close is idempotent; every call returns the first one's
// result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.wg.Wait()
		s.closeSubscriptions()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
			return
		}
		s.log.Info("store closed", "path", s.cfg.Path)
	})
	return s.closeErr
}

func (s *Store) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// view runs fn in a bbolt read transaction, mapping a closed database to
// ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.closed() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Origin returns the store's incarnation id: random, non-zero, created when
// the file was and kept in it.
func (s *Store) Origin() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.origin
}

// reincarnation is the committer's answer to Reincarnate.
type reincarnation struct {
	old, new uint64
	err      error
}

// Reincarnate gives the store a new origin, durably, between two commits.
// A server does so when its peers have seen more of its own writes than it
// holds (it was restored from a backup, or lost its last writes): its new
// writes must not reuse seqs its peers already cover, and its old writes,
// now of a foreign origin, come back through Apply. It wakes the waiters
// of Written, who follow the store's own origin. It returns the old and
// the new origin.
func (s *Store) Reincarnate(ctx context.Context) (old, new uint64, err error) {
	answer := make(chan reincarnation, 1)
	select {
	case s.reinc <- answer:
		r := <-answer
		return r.old, r.new, r.err
	case <-s.closing:
		return 0, 0, ErrClosed
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// reincarnate runs on the committer goroutine (see Reincarnate).
func (s *Store) reincarnate() reincarnation {
	o, err := newOrigin()
	if err != nil {
		return reincarnation{err: err}
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put(keyOrigin, u64(o))
	}); err != nil {
		return reincarnation{err: fmt.Errorf("store: new origin: %w", err)}
	}
	s.mu.Lock()
	old := s.origin
	s.origin = o
	s.mu.Unlock()
	// Waiters on Written follow the store's own writes: those of a new
	// origin from now on.
	s.written.fire()
	return reincarnation{old: old, new: o}
}

// Get returns the live leaf at path with a copy of its data. It returns an
// error wrapping ErrNotFound if there is none (missing or deleted), and one
// wrapping ErrInvalidPath for a path that is not canonical.
func (s *Store) Get(path string) (Node, error) {
	if err := nodepath.Validate(path); err != nil {
		return Node{}, err
	}
	var n Node
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNodes).Get([]byte(path))
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, nodepath.Quote(path))
		}
		m, data, err := decodeNode(v)
		if err != nil {
			return fmt.Errorf("store: node %s: %w", nodepath.Quote(path), err)
		}
		if m.Deleted {
			return fmt.Errorf("%w: %s", ErrNotFound, nodepath.Quote(path))
		}
		n = Node{Path: path, Meta: m, Data: copyData(data)}
		return nil
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}

// Lookup returns the metadata of path, tombstones included, from memory.
func (s *Store) Lookup(path string) (Meta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.tree.Get(path)
	if !ok {
		return Meta{}, false
	}
	return v.(*entry).meta(), true
}

// Walk calls fn for every node at or under prefix ("/" = all), live ones and
// tombstones, in path (byte) order, until fn returns false. An invalid
// prefix matches nothing. Walk holds the store's read lock while it runs:
// fn must not block or call the Store.
func (s *Store) Walk(prefix string, fn func(path string, m Meta) bool) {
	if nodepath.ValidatePrefix(prefix) != nil {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	walkUnder(s.tree, prefix, true, func(path string, v any) bool {
		return fn(path, v.(*entry).meta())
	})
}

// walkUnder calls fn for the keys of t at prefix (if self) and strictly
// under it, in key order, until fn returns false. It reports whether fn
// stopped it.
func walkUnder(t *radix.Tree, prefix string, self bool, fn func(path string, v any) bool) bool {
	stopped := false
	visit := func(path string, v any) bool {
		if !fn(path, v) {
			stopped = true
		}
		return stopped
	}
	if prefix == "/" {
		t.WalkPrefix("/", visit)
		return stopped
	}
	if v, ok := t.Get(prefix); ok && self && visit(prefix, v) {
		return true
	}
	t.WalkPrefix(prefix+"/", visit)
	return stopped
}

// Scan returns a page of nodes at or under opts.Prefix, in path order,
// tombstones included, with copies of their data. It reads straight from
// bbolt in one read transaction. next is the path to pass as opts.After for
// the next page, "" once the scan is complete.
func (s *Store) Scan(opts ScanOptions) (nodes []Node, next string, err error) {
	if err := nodepath.ValidatePrefix(opts.Prefix); err != nil {
		return nil, "", err
	}
	err = s.view(func(tx *bolt.Tx) error {
		nodes, next, err = scanPage(tx, opts, 0)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return nodes, next, nil
}

// scanPage reads one page of Scan in tx; maxRead, if positive, bounds the
// nodes it reads, kept or not (next then names the last one read).
func scanPage(tx *bolt.Tx, opts ScanOptions, maxRead int) (nodes []Node, next string, err error) {
	maxNodes, maxBytes := pageLimits(opts.MaxNodes, opts.MaxBytes)
	size, read := 0, 0
	var arena copyArena
	var last string
	// visit handles one candidate; it returns false to stop the scan.
	visit := func(k, v []byte) (bool, error) {
		if maxRead > 0 && read >= maxRead {
			// Enough read for one transaction, kept or not: the caller
			// resumes after the last node read.
			next = last
			return false, nil
		}
		read++
		path := string(k)
		last = path
		m, data, err := decodeNode(v)
		if err != nil {
			return false, fmt.Errorf("store: node %s: %w", nodepath.Quote(path), err)
		}
		if opts.Keep != nil && !opts.Keep(path, m) {
			return true, nil
		}
		if len(nodes) > 0 && (len(nodes) >= maxNodes || size+len(data) > maxBytes) {
			// A kept node does not fit: the caller resumes after the
			// last one that did.
			next = nodes[len(nodes)-1].Path
			return false, nil
		}
		nodes = append(nodes, Node{Path: path, Meta: m, Data: arena.copy(data)})
		size += len(data)
		return true, nil
	}
	c := tx.Bucket(bucketNodes).Cursor()
	// The subtree is the prefix itself, then the contiguous run of keys
	// starting with prefix+"/" (keys like prefix+"-x" sort in between).
	sub := opts.Prefix + "/"
	if opts.Prefix == "/" {
		sub = "/"
	} else if opts.After < opts.Prefix {
		if k, v := c.Seek([]byte(opts.Prefix)); k != nil && string(k) == opts.Prefix {
			if ok, err := visit(k, v); !ok || err != nil {
				return nodes, next, err
			}
		}
	}
	var k, v []byte
	if opts.After >= sub {
		k, v = c.Seek([]byte(opts.After))
		if k != nil && string(k) == opts.After {
			k, v = c.Next()
		}
	} else {
		k, v = c.Seek([]byte(sub))
	}
	for ; k != nil && bytes.HasPrefix(k, []byte(sub)); k, v = c.Next() {
		if ok, err := visit(k, v); !ok || err != nil {
			return nodes, next, err
		}
	}
	return nodes, next, nil
}

// copyData copies data out of a bbolt transaction; empty data (always a
// tombstone's) is nil.
func copyData(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Clone(data)
}

// copyArena copies the data of a page of nodes out of a bbolt
// transaction into shared chunks: one allocation for many small nodes
// rather than one each. A Data slice keeps its whole chunk alive, which
// suits pages that are sent and dropped.
type copyArena struct{ buf []byte }

// copyChunk is the size of a copyArena chunk; data over a quarter of it
// gets an allocation of its own.
const copyChunk = 64 << 10

func (a *copyArena) copy(data []byte) []byte {
	if len(data) == 0 || len(data) > copyChunk/4 {
		return copyData(data)
	}
	if len(data) > cap(a.buf)-len(a.buf) {
		a.buf = make([]byte, 0, copyChunk)
	}
	a.buf = append(a.buf, data...)
	return a.buf[len(a.buf)-len(data) : len(a.buf) : len(a.buf)]
}

// pageLimits applies the page defaults.
func pageLimits(maxNodes, maxBytes int) (int, int) {
	if maxNodes <= 0 {
		maxNodes = defaultPageNodes
	}
	if maxBytes <= 0 {
		maxBytes = defaultPageBytes
	}
	return maxNodes, maxBytes
}

// Changes returns the current winners written by origin with a seq above
// after, in seq order, with copies of their data, read from the log bucket
// in one read transaction. maxNodes and maxBytes bound the page (0 = the
// Scan defaults; a page holds at least one node). last is the seq of the
// last node returned, or after if none; more reports that the page was cut
// by a limit and more winners follow.
func (s *Store) Changes(origin, after uint64, maxNodes, maxBytes int) (nodes []Node, last uint64, more bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		nodes, last, more, err = changesPage(tx, changesRange{
			origin: origin, after: after, upto: ^uint64(0), maxNodes: maxNodes, maxBytes: maxBytes,
		})
		return err
	})
	if err != nil {
		return nil, 0, false, err
	}
	return nodes, last, more, nil
}

// changesRange selects a page of the log for changesPage.
type changesRange struct {
	// origin's winners with after < seq <= upto.
	origin, after, upto uint64
	// keep filters nodes before their data is copied out; nil keeps all.
	keep func(path string, m Meta) bool
	// maxNodes and maxBytes bound the kept nodes of the page (see
	// pageLimits); maxRead, if positive, the log entries read.
	maxNodes, maxBytes, maxRead int
}

// changesPage reads one page of the log in tx. last is the seq of the last
// entry read (kept or not), or r.after if none; more reports that the page
// was cut by a limit before r.upto.
func changesPage(tx *bolt.Tx, r changesRange) (nodes []Node, last uint64, more bool, err error) {
	maxNodes, maxBytes := pageLimits(r.maxNodes, r.maxBytes)
	last = r.after
	if r.after >= r.upto {
		return nil, last, false, nil
	}
	bn := newNodeCursor(tx.Bucket(bucketNodes))
	c := tx.Bucket(bucketLog).Cursor()
	size, read := 0, 0
	var arena copyArena
	for k, v := c.Seek(logKey(r.origin, r.after+1)); k != nil; k, v = c.Next() {
		o, seq, err := decodeLogKey(k)
		if err != nil {
			return nil, 0, false, fmt.Errorf("store: log: %w", err)
		}
		if o != r.origin || seq > r.upto {
			break
		}
		if r.maxRead > 0 && read >= r.maxRead {
			return nodes, last, true, nil
		}
		read++
		path := string(v)
		val := bn.get(v)
		if val == nil {
			return nil, 0, false, fmt.Errorf("store: log entry %d/%d: node %s missing", o, seq, nodepath.Quote(path))
		}
		m, data, err := decodeNode(val)
		if err != nil {
			return nil, 0, false, fmt.Errorf("store: node %s: %w", nodepath.Quote(path), err)
		}
		if m.Origin != o || m.Seq != seq {
			return nil, 0, false, fmt.Errorf("store: log entry %d/%d: node %s is %d/%d", o, seq, nodepath.Quote(path), m.Origin, m.Seq)
		}
		if r.keep != nil && !r.keep(path, m) {
			last = seq
			continue
		}
		if len(nodes) > 0 && (len(nodes) >= maxNodes || size+len(data) > maxBytes) {
			return nodes, last, true, nil
		}
		nodes = append(nodes, Node{Path: path, Meta: m, Data: arena.copy(data)})
		size += len(data)
		last = seq
	}
	return nodes, last, false, nil
}

// nodeCursor looks nodes up by path with one cursor. Lookups in ascending
// path order, which is how the winners of a bulk write follow each other
// in the log, step forward from the previous one instead of descending from
// the root each time. Valid only inside its transaction.
type nodeCursor struct {
	c    *bolt.Cursor
	k, v []byte
}

// nodeCursorSteps bounds the steps forward tried before seeking.
const nodeCursorSteps = 4

func newNodeCursor(b *bolt.Bucket) *nodeCursor { return &nodeCursor{c: b.Cursor()} }

// get returns the value stored under path, or nil.
func (nc *nodeCursor) get(path []byte) []byte {
	if nc.k == nil || bytes.Compare(nc.k, path) > 0 || !nc.stepTo(path) {
		nc.k, nc.v = nc.c.Seek(path)
	}
	if nc.k != nil && bytes.Equal(nc.k, path) {
		return nc.v
	}
	return nil
}

// stepTo moves forward to the first key at or after path if that takes at
// most nodeCursorSteps steps, and reports whether it did.
func (nc *nodeCursor) stepTo(path []byte) bool {
	for range nodeCursorSteps + 1 {
		if nc.k == nil || bytes.Compare(nc.k, path) >= 0 {
			return true
		}
		nc.k, nc.v = nc.c.Next()
	}
	return false
}

// CommitCount returns the number of write transactions committed since
// Open: it changes with every commit that changed something, whether
// writes, replicated nodes or a repair.
func (s *Store) CommitCount() uint64 { return s.commits.Load() }

// Vector returns a copy of the store's version vector.
func (s *Store) Vector() Vector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vector.Clone()
}

// Root returns the root of the hash tree.
func (s *Store) Root() Hash {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hash.root()
}

// TreeChildren returns the TreeFanout child hashes of internal node index at
// level (0 = the root, index 0; level < TreeDepth, index < TreeFanout^level),
// or nil for a node that does not exist. The slice is the caller's.
func (s *Store) TreeChildren(level, index int) []Hash {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hash.children(level, index)
}

// Bucket returns every node, live or tombstone, with its data, in leaf
// bucket b of the hash tree (0 <= b < TreeLeaves), in path order: what a
// hash-tree repair sends for a differing bucket. It takes the bucket's
// paths from the index under the read lock and reads the nodes in one
// bbolt read transaction: its cost is the size of the bucket, not of the
// store.
func (s *Store) Bucket(b int) ([]Node, error) {
	if b < 0 || b >= TreeLeaves {
		return nil, nil
	}
	s.mu.RLock()
	paths := slices.Clone(s.buckets[b])
	s.mu.RUnlock()
	if len(paths) == 0 {
		return nil, nil
	}
	slices.Sort(paths)
	out := make([]Node, 0, len(paths))
	err := s.view(func(tx *bolt.Tx) error {
		nc := newNodeCursor(tx.Bucket(bucketNodes))
		for _, path := range paths {
			v := nc.get([]byte(path))
			if v == nil {
				continue // indexed, not yet committed: the next round has it
			}
			m, data, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("store: node %s: %w", nodepath.Quote(path), err)
			}
			// A bucket holds a few nodes: a 64 KiB arena chunk would cost
			// more than their copies.
			out = append(out, Node{Path: path, Meta: m, Data: copyData(data)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Stats returns the counts of live leaves, their bytes and tombstones.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats
}

// submit hands r to the committer and waits for its answer. If ctx ends or
// the store closes before the committer takes r, nothing is written.
func (s *Store) submit(ctx context.Context, r *request) result {
	if s.closed() {
		return result{err: ErrClosed}
	}
	select {
	case s.reqs <- r:
		// Taken: the committer answers it, also when closing.
		return <-r.done
	case <-s.closing:
		return result{err: ErrClosed}
	case <-ctx.Done():
		return result{err: ctx.Err()}
	}
}
