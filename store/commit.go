package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	radix "github.com/armon/go-radix"
	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/lww"
	"github.com/replds/replds/nodepath"
)

// Group commit bounds: the committer stops gathering requests for one
// transaction at maxGroup requests or maxGroupBytes of data.
const (
	maxGroup      = 256
	maxGroupBytes = 64 << 20
)

// fillPercent is how full bbolt packs the pages it splits in the nodes and
// log buckets.
const fillPercent = 0.9

// request is one Write or Apply call waiting for the committer.
type request struct {
	ctx context.Context
	// writes for a Write call; nodes and adv for an Apply call.
	writes []Write
	apply  bool
	nodes  []Node
	adv    []Advance
	// bury, for a Bury call, makes nodes the candidates to bury.
	bury *buryRequest
	// vals[i] is the bbolt value of writes[i] or nodes[i] (see
	// valueArena); nil for deletes and tombstones.
	vals [][]byte
	// size is the request's data in bytes.
	size int
	// done receives the one answer (buffered).
	done chan result
}

// result is the committer's answer to a request.
type result struct {
	// nodes is what a Write changed (metadata only); n the count for Apply.
	nodes []Node
	n     int
	err   error
	// stamped reports that an Apply or Bury stamped tombstones of this
	// store's origin (see Store.Bury): the pushers must wake.
	stamped bool
}

// Write applies a batch of client writes atomically: all of them or none.
// Paths must be canonical (nodepath.Validate), appear once, and the batch must
// fit the configured limits. Within the batch, writes take effect in order;
// after the batch, no leaf it wrote may have a live leaf above it or a live
// node below it (ErrConflict, naming both paths). A delete of a live leaf
// tombstones it; of a missing or deleted path it does nothing; of a path
// that is only a directory it fails with ErrIsDir unless Recursive, which
// tombstones every live leaf at or under the path. Data on a delete is
// ignored. Writing the data a live leaf already holds changes nothing.
//
// Every changed node is stamped with this store's origin, the next seq and
// a version above the path's current version and every version issued
// before, from the HLC of Config.Now. If the versions this store issued are
// more than MaxClockOffset ahead of the wall clock (the clock went back),
// Write fails with ErrClockSkew. A path whose current version is ahead
// (written by a skewed peer) gets that version plus one, which does not
// move the local clock.
//
// Write returns the metadata (no data) of the changed nodes in request
// order once they are durable; nil if nothing changed. If ctx ends before
// the committer starts on the batch, Write returns ctx.Err() and writes
// nothing; after that, Write waits for the commit. Write copies the data it
// is given.
func (s *Store) Write(ctx context.Context, ws []Write) ([]Node, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	if len(ws) == 0 {
		return nil, nil
	}
	if len(ws) > s.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: %d writes in a batch, limit %d", ErrTooLarge, len(ws), s.cfg.MaxBatch)
	}
	seen := make(map[string]struct{}, len(ws))
	total := 0
	for _, w := range ws {
		if err := nodepath.Validate(w.Path); err != nil {
			return nil, err
		}
		if _, dup := seen[w.Path]; dup {
			return nil, fmt.Errorf("%w %s: duplicate path in batch", ErrInvalidPath, nodepath.Quote(w.Path))
		}
		seen[w.Path] = struct{}{}
		if w.Delete {
			continue
		}
		if len(w.Data) > s.cfg.MaxNodeSize {
			return nil, fmt.Errorf("%w: node %s: %d bytes, limit %d", ErrTooLarge, nodepath.Quote(w.Path), len(w.Data), s.cfg.MaxNodeSize)
		}
		total += len(w.Data)
	}
	if total > s.cfg.MaxBatchBytes {
		return nil, fmt.Errorf("%w: batch of %d bytes, limit %d", ErrTooLarge, total, s.cfg.MaxBatchBytes)
	}
	r := s.submit(ctx, writeRequest(ctx, ws, total))
	if len(r.nodes) > 0 {
		s.written.fire()
	}
	return r.nodes, r.err
}

// writeRequest returns the request of a Write call of ws, whose data
// total bytes. It holds one copy of all the data, laid out as the values
// bbolt stores: the caller keeps its slices, subscribers and bbolt get
// ours.
func writeRequest(ctx context.Context, ws []Write, total int) *request {
	arena := newValueArena(len(ws), total)
	own := make([]Write, len(ws))
	vals := make([][]byte, len(ws))
	for i, w := range ws {
		own[i] = Write{Path: w.Path, Delete: w.Delete, Recursive: w.Recursive}
		if !w.Delete {
			vals[i] = arena.add(w.Data)
			own[i].Data = vals[i][headerLen:]
		}
	}
	return &request{ctx: ctx, writes: own, vals: vals, size: total, done: make(chan result, 1)}
}

// Apply stores nodes replicated from peers, each carrying its version,
// origin, seq and deleted flag; Size is recomputed from Data and a
// tombstone's data is dropped. A node replaces the current one at its path
// if there is none or it is Newer; otherwise it is skipped. Apply makes no
// leaf/directory checks and enforces no size limits: for replicated data
// the store is a plain last-write-wins map. Nodes of this store's own origin
// are ignored (our writes echoed back), but for a tombstone newer than what
// the store holds at its path: one it collected, which a peer still keeps.
//
// Versions are absorbed into the local clock, but only up to MaxClockOffset
// ahead of the wall clock, so that one skewed peer cannot drag every later
// local write into the future.
//
// Every node of origin o with seq == vector[o]+1, applied or skipped, raises
// vector[o] to its seq; then each Advance raises vector[a.Origin] to a.To if
// it is at least a.From. Advances for our own origin are ignored.
//
// Apply returns the number of nodes that changed the store once the changes
// and the vector are durable. Any invalid path fails the whole call with
// ErrInvalidPath, a node without origin or seq with ErrInvalidNode. ctx
// behaves as for Write; Apply copies the data it is given.
func (s *Store) Apply(ctx context.Context, nodes []Node, adv []Advance) (int, error) {
	if s.closed() {
		return 0, ErrClosed
	}
	if len(nodes) == 0 && len(adv) == 0 {
		return 0, nil
	}
	total := 0
	for _, n := range nodes {
		if err := nodepath.Validate(n.Path); err != nil {
			return 0, err
		}
		if n.Origin == 0 || n.Seq == 0 {
			return 0, fmt.Errorf("%w: %s: origin %d, seq %d", ErrInvalidNode, nodepath.Quote(n.Path), n.Origin, n.Seq)
		}
		if len(n.Data) > math.MaxUint32 {
			return 0, fmt.Errorf("%w: node %s: %d bytes", ErrTooLarge, nodepath.Quote(n.Path), len(n.Data))
		}
		if !n.Deleted {
			total += len(n.Data)
		}
	}
	r := s.submit(ctx, applyRequest(ctx, nodes, adv, total))
	if r.stamped {
		s.written.fire()
	}
	return r.n, r.err
}

// applyRequest returns the request of an Apply call of nodes and adv,
// whose data total bytes, copied as writeRequest copies a Write's.
func applyRequest(ctx context.Context, nodes []Node, adv []Advance, total int) *request {
	arena := newValueArena(len(nodes), total)
	own := make([]Node, len(nodes))
	vals := make([][]byte, len(nodes))
	for i, n := range nodes {
		m := n.Meta
		m.Size = 0
		own[i] = Node{Path: n.Path, Meta: m}
		if !n.Deleted {
			vals[i] = arena.add(n.Data)
			own[i].Data = vals[i][headerLen:]
			own[i].Size = uint32(len(n.Data))
		}
	}
	return &request{ctx: ctx, apply: true, nodes: own, adv: slices.Clone(adv), vals: vals, size: total, done: make(chan result, 1)}
}

// run is the committer: it takes requests in arrival order and commits
// them in groups until the store closes.
func (s *Store) run() {
	defer s.wg.Done()
	for {
		select {
		case <-s.closing:
			s.stopCompaction()
			return
		case r := <-s.reqs:
			s.commitGroup(s.gather(r))
		case answer := <-s.reinc:
			answer <- s.reincarnate()
		case answer := <-s.erase.reqs:
			s.startCompaction("requested", answer)
		case <-s.erase.due():
			s.startCompaction("erase interval")
		case d := <-s.erase.copied():
			s.finishCompaction(d)
		case c := <-s.collects:
			c.done <- s.collect(c)
		}
	}
}

// gather returns first plus the requests already waiting to be taken, up to
// the group bounds. While a group commits, new requests wait on s.reqs; they
// form the next group.
func (s *Store) gather(first *request) []*request {
	group := []*request{first}
	size := first.size
	for len(group) < maxGroup && size < maxGroupBytes {
		select {
		case r := <-s.reqs:
			group = append(group, r)
			size += r.size
		default:
			return group
		}
	}
	return group
}

// commitGroup processes reqs in order in one bbolt transaction, commits it,
// then updates memory, publishes the events and answers every request. A
// request that fails validation fails alone; a storage error fails them
// all and leaves memory unchanged.
//
// The events of the group's leading Apply calls are published before the
// commit, while its fsyncs run: replicated changes are durable at their
// origin already, which sends a change only once it committed it, so a
// watcher need not wait for this copy. Should this server crash before the
// commit, it gets the changes again from its peers; should the commit
// fail, the sender sends them again, and they are published again. Changes
// this store stamps (Write), and whatever follows them in the group, are
// published only once durable here, where they are acknowledged.
func (s *Store) commitGroup(reqs []*request) {
	results := make([]result, len(reqs))
	if err := s.commitTx(reqs, results); err != nil {
		for i := range results {
			if results[i].err == nil {
				results[i] = result{err: err}
			}
		}
	}
	for i, r := range reqs {
		r.done <- results[i]
	}
}

// commitTx does the transactional part of commitGroup: it fills results
// and, on success, updates memory; it publishes the events.
func (s *Store) commitTx(reqs []*request, results []result) error {
	g, err := s.beginGroup()
	if err != nil {
		return err
	}
	events, early, err := g.process(reqs, results)
	if err != nil {
		_ = g.tx.Rollback()
		return err
	}
	if !g.dirty {
		// Nothing to write. Absorbed clock values need no durability:
		// versions already stored stay ordered by the per-path rule.
		_ = g.tx.Rollback()
		s.mu.Lock()
		s.lastIssued = g.lastIssued
		s.mu.Unlock()
		return nil
	}
	if err := g.persistState(); err != nil {
		_ = g.tx.Rollback()
		return err
	}
	if early > 0 {
		// Subscribe waits for subMu until memory holds these changes, so
		// that a reader who subscribes and then reads the state misses
		// nothing.
		s.subMu.Lock()
		defer s.subMu.Unlock()
		s.publishLocked(events[:early])
	}
	if err := s.commit(g.tx); err != nil {
		return err
	}
	g.install()
	s.noteCommit(g)
	s.buried.Add(g.buried)
	if early > 0 {
		s.publishLocked(events[early:])
	} else {
		s.publish(events)
	}
	return nil
}

// beginGroup opens the write transaction of a group.
func (s *Store) beginGroup() (*group, error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	// Keys mostly arrive in order (a tree upload, a replication page, the
	// log's sequential seqs); with bbolt's default fill of 50% every page
	// such a batch splits off would stay half empty on disk.
	tx.Bucket(bucketNodes).FillPercent = fillPercent
	tx.Bucket(bucketLog).FillPercent = fillPercent
	return &group{
		s:          s,
		tx:         tx,
		changes:    radix.New(),
		vector:     s.vector.Clone(),
		dirtyVec:   make(map[uint64]struct{}),
		lastIssued: s.lastIssued,
	}, nil
}

// process runs reqs in order against the group, each as one batch, and
// fills results. It returns the events of the requests that changed
// something; events[:early] come from Apply calls that no Write with an
// event precedes: they may go out before the commit. An error is a storage
// error that fails the whole group.
func (g *group) process(reqs []*request, results []result) (events []Event, early int, err error) {
	for i, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		b := g.newBatch()
		var reqErr error
		switch {
		case r.bury != nil:
			results[i].n = b.bury(r.nodes, r.bury.floor)
		case r.apply:
			results[i].n = b.apply(r.nodes, r.vals, r.adv)
		default:
			reqErr = b.write(r.writes, r.vals)
		}
		if reqErr != nil {
			if b.storageErr != nil {
				return nil, 0, b.storageErr
			}
			results[i] = result{err: reqErr}
			continue
		}
		if err := b.flush(); err != nil {
			return nil, 0, err
		}
		if ev, ok := b.merge(); ok {
			// Tombstones this store stamped are its own writes: they go
			// out once durable, as a Write's.
			if r.apply && !b.buried && early == len(events) {
				early++
			}
			results[i].stamped = b.buried
			events = append(events, ev)
		}
		if !r.apply {
			results[i].nodes = b.metas()
		}
	}
	return events, early, nil
}

// commit commits tx, unless a test made commits fail, and counts it.
func (s *Store) commit(tx *bolt.Tx) error {
	if fail := s.failCommit.Load(); fail != nil {
		if err := (*fail)(); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store: commit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	s.commits.Add(1)
	return nil
}

// install makes memory reflect the committed group.
func (g *group) install() {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	g.changes.Walk(func(path string, v any) bool {
		s.insert(path, v.(*change).meta)
		return false
	})
	s.vector = g.vector
	s.lastIssued = g.lastIssued
}

// group is the state of one transaction: the committed memory state plus
// the changes of the requests processed so far.
type group struct {
	s  *Store
	tx *bolt.Tx
	// changes holds path -> *change, the final state of every path changed
	// in the group.
	changes *radix.Tree
	// vector is the store's vector after the requests so far; dirtyVec the
	// origins to persist.
	vector   Vector
	dirtyVec map[uint64]struct{}
	// lastIssued is the HLC after the requests so far.
	lastIssued uint64
	// dirty reports that the transaction holds changes to commit.
	dirty bool
	// freed reports that it deletes or overwrites node data, which then
	// stays in bbolt's freed pages until a compaction (compact.go).
	freed bool
	// buried counts the tombstones stampBuried stamped in the group.
	buried uint64
}

// persistState writes the vector entries and the clock changed by the
// group.
func (g *group) persistState() error {
	vb := g.tx.Bucket(bucketVector)
	for o := range g.dirtyVec {
		if err := vb.Put(u64(o), u64(g.vector[o])); err != nil {
			return fmt.Errorf("store: put vector: %w", err)
		}
	}
	if g.lastIssued != g.s.lastIssued {
		if err := g.tx.Bucket(bucketState).Put(keyHLC, u64(g.lastIssued)); err != nil {
			return fmt.Errorf("store: put clock: %w", err)
		}
	}
	return nil
}

// get returns the metadata of path as of the requests processed so far.
func (g *group) get(path string) (Meta, bool) {
	if v, ok := g.changes.Get(path); ok {
		return v.(*change).meta, true
	}
	if v, ok := g.s.tree.Get(path); ok {
		return v.(*entry).meta(), true
	}
	return Meta{}, false
}

// change is the new state of one path.
type change struct {
	path string
	// meta is the new metadata; for a Write, Version, Origin and Seq are
	// set by stamp once the batch is known to succeed.
	meta Meta
	// val is the bbolt value from the request's arena (header room, then
	// the data); nil for a tombstone.
	val []byte
	// prev is the state before the request (none if !hadPrev).
	prev    Meta
	hadPrev bool
}

// batch is the changes of one request, layered over its group. They reach
// the group (and the transaction) only if the whole request succeeds.
type batch struct {
	g       *group
	changes *radix.Tree // path -> *change
	order   []*change   // first-change order
	// vector holds the entries this request raised.
	vector     map[uint64]uint64
	lastIssued uint64
	// storageErr is set when a bbolt error, not the request, is to blame.
	storageErr error
	// buried reports tombstones stamped with this store's origin by an
	// Apply or Bury (see buryNode).
	buried bool
}

func (g *group) newBatch() *batch {
	return &batch{g: g, changes: radix.New(), lastIssued: g.lastIssued}
}

// get returns the metadata of path as this request sees it.
func (b *batch) get(path string) (Meta, bool) {
	if v, ok := b.changes.Get(path); ok {
		return v.(*change).meta, true
	}
	return b.g.get(path)
}

func (b *batch) vec(origin uint64) uint64 {
	if seq, ok := b.vector[origin]; ok {
		return seq
	}
	return b.g.vector[origin]
}

func (b *batch) setVec(origin, seq uint64) {
	if b.vector == nil {
		b.vector = make(map[uint64]uint64)
	}
	b.vector[origin] = seq
}

// data returns the node data of c (nil for a tombstone).
func (c *change) data() []byte {
	if c.val == nil {
		return nil
	}
	return c.val[headerLen:]
}

// set records the new state of path, with val its value from the
// request's arena (nil for a tombstone), keeping its first position if the
// request already changed it.
func (b *batch) set(path string, m Meta, val []byte) {
	if v, ok := b.changes.Get(path); ok {
		c := v.(*change)
		c.meta, c.val = m, val
		return
	}
	c := &change{path: path, meta: m, val: val}
	c.prev, c.hadPrev = b.g.get(path)
	b.changes.Insert(path, c)
	b.order = append(b.order, c)
}

// walkLive calls fn for every path at (if self) or strictly under p that
// holds a live node as this request sees it, until fn returns false.
func (b *batch) walkLive(p string, self bool, fn func(path string) bool) {
	layers := [...]*radix.Tree{b.changes, b.g.changes, b.g.s.tree}
	for i, t := range layers {
		stopped := walkUnder(t, p, self, func(path string, v any) bool {
			if metaOf(v).Deleted {
				return true
			}
			for _, upper := range layers[:i] {
				if _, shadowed := upper.Get(path); shadowed {
					return true
				}
			}
			return fn(path)
		})
		if stopped {
			return
		}
	}
}

// liveUnder returns a path strictly under p holding a live node, or "".
func (b *batch) liveUnder(p string) string {
	found := ""
	b.walkLive(p, false, func(path string) bool {
		found = path
		return false
	})
	return found
}

func metaOf(v any) Meta {
	switch v := v.(type) {
	case *entry:
		return v.meta()
	case *change:
		return v.meta
	}
	panic(fmt.Sprintf("store: unexpected tree value %T", v))
}

// write processes the writes of a Write request; vals are their values.
func (b *batch) write(ws []Write, vals [][]byte) error {
	for i, w := range ws {
		switch {
		case w.Delete && w.Recursive:
			var paths []string
			b.walkLive(w.Path, true, func(p string) bool {
				paths = append(paths, p)
				return true
			})
			slices.Sort(paths)
			for _, p := range paths {
				b.set(p, Meta{Deleted: true}, nil)
			}
		case w.Delete:
			if m, ok := b.get(w.Path); ok && !m.Deleted {
				b.set(w.Path, Meta{Deleted: true}, nil)
			} else if under := b.liveUnder(w.Path); under != "" {
				return fmt.Errorf("%w: delete %s: %s lies under it", ErrIsDir, nodepath.Quote(w.Path), nodepath.Quote(under))
			}
		default:
			b.set(w.Path, Meta{Size: uint32(len(w.Data))}, vals[i])
		}
	}
	if err := b.dropNoops(); err != nil {
		return err
	}
	for _, c := range b.order {
		if !c.meta.Deleted {
			if err := b.checkLeaf(c.path); err != nil {
				return err
			}
		}
	}
	return b.stamp()
}

// dropNoops removes the changes that leave their path as it was before the
// request: a tombstone over nothing or a tombstone, or the data the live
// leaf already holds (compared with the transaction, which holds the
// group's state).
func (b *batch) dropNoops() error {
	nodes := b.g.tx.Bucket(bucketNodes)
	kept := b.order[:0]
	for _, c := range b.order {
		noop := false
		switch {
		case !c.hadPrev || c.prev.Deleted:
			noop = c.meta.Deleted
		case !c.meta.Deleted && c.prev.Size == c.meta.Size:
			v := nodes.Get([]byte(c.path))
			_, data, err := decodeNode(v)
			if err != nil {
				b.storageErr = fmt.Errorf("store: node %s: %w", nodepath.Quote(c.path), err)
				return b.storageErr
			}
			noop = bytes.Equal(data, c.data())
		}
		if noop {
			b.changes.Delete(c.path)
			continue
		}
		kept = append(kept, c)
	}
	clear(b.order[len(kept):])
	b.order = kept
	return nil
}

// checkLeaf enforces the leaf/directory rule for a path the request makes a
// live leaf: no live leaf above it, no live node under it.
func (b *batch) checkLeaf(p string) error {
	for i := 1; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		if m, ok := b.get(p[:i]); ok && !m.Deleted {
			return fmt.Errorf("%w: %s would lie under leaf %s", ErrConflict, nodepath.Quote(p), nodepath.Quote(p[:i]))
		}
	}
	if under := b.liveUnder(p); under != "" {
		return fmt.Errorf("%w: leaf %s would have %s under it", ErrConflict, nodepath.Quote(p), nodepath.Quote(under))
	}
	return nil
}

// hlc returns the HLC value of wall clock t (lww.VersionAt): milliseconds
// in the top 48 bits, a zero logical counter in the low 16.
func hlc(t time.Time) uint64 { return lww.VersionAt(t) }

// hlcLimit returns the highest version accepted as current at wall clock t.
func hlcLimit(t time.Time) uint64 {
	return hlc(t.Add(MaxClockOffset)) | 0xffff
}

// stamp gives each change of a Write its origin, seq and version.
func (b *batch) stamp() error {
	s := b.g.s
	now := s.now()
	wall, limit := hlc(now), hlcLimit(now)
	last, seq := b.lastIssued, b.vec(s.origin)
	for _, c := range b.order {
		v := max(wall, last+1)
		if v > limit {
			// Versions this server issued are far ahead of its clock: the
			// clock went back. Refuse rather than stamp on a clock known
			// to be wrong.
			ahead := time.Duration(int64(v>>16)-now.UnixMilli()) * time.Millisecond
			return fmt.Errorf("%w: %s needs version %d, %s ahead of the local clock", ErrClockSkew, nodepath.Quote(c.path), v, ahead)
		}
		last = v
		if c.hadPrev && c.prev.Version >= v {
			// A skewed peer put this path ahead: keep its versions
			// growing, without dragging the local clock along.
			v = c.prev.Version + 1
		}
		seq++
		c.meta.Version, c.meta.Origin, c.meta.Seq = v, s.origin, seq
	}
	b.lastIssued = last
	if len(b.order) > 0 {
		b.setVec(s.origin, seq)
	}
	return nil
}

// apply processes the nodes (vals are their values) and advances of an
// Apply request and returns the number of changed nodes.
func (b *batch) apply(nodes []Node, vals [][]byte, adv []Advance) int {
	s := b.g.s
	limit := hlcLimit(s.now())
	for i, n := range nodes {
		if n.Origin == s.origin {
			// Our own writes echoed back change nothing: we hold them or
			// newer. But one of our tombstones that we collected and a
			// peer still keeps comes back when we hold nothing newer at
			// its path (nothing, or an older tombstone that came back
			// too), so that the hash trees agree until every peer has
			// collected it.
			if cur, ok := b.get(n.Path); n.Deleted && (!ok || n.Newer(cur)) {
				b.set(n.Path, n.Meta, nil)
			}
			continue
		}
		if n.Version <= limit {
			b.lastIssued = max(b.lastIssued, n.Version)
		}
		switch cur, ok := b.get(n.Path); {
		case !ok && !n.Deleted && n.Version <= s.floor.Version:
			// A live node older than a collected tombstone, at a path
			// this store no longer holds: a collected tombstone may have
			// deleted it (a peer restored from an old backup sends it
			// back). Never resurrect: take it for deleted, and say so
			// with a tombstone of our own, which deletes it where it
			// lingers.
			b.buryNode(n.Path, n.Version)
		case !ok || n.Newer(cur):
			b.set(n.Path, n.Meta, vals[i])
		}
		if n.Seq == b.vec(n.Origin)+1 {
			b.setVec(n.Origin, n.Seq)
		}
	}
	for _, a := range adv {
		if a.Origin == s.origin {
			continue
		}
		if cur := b.vec(a.Origin); cur >= a.From && a.To > cur {
			b.setVec(a.Origin, a.To)
		}
	}
	return b.stampBuried()
}

// flush writes the request's changes into the transaction: each node, and
// its log entry in place of the one of the node it replaces.
func (b *batch) flush() error {
	nodes := b.g.tx.Bucket(bucketNodes)
	logb := b.g.tx.Bucket(bucketLog)
	for _, c := range b.order {
		key := []byte(c.path)
		val := c.val
		if val == nil {
			val = encodeNode(c.meta, nil)
		} else {
			putHeader(val, c.meta)
		}
		if err := nodes.Put(key, val); err != nil {
			return fmt.Errorf("store: put node %s: %w", nodepath.Quote(c.path), err)
		}
		if c.hadPrev && !c.prev.Deleted && c.prev.Size > 0 {
			b.g.freed = true
		}
		if c.hadPrev {
			if err := logb.Delete(logKey(c.prev.Origin, c.prev.Seq)); err != nil {
				return fmt.Errorf("store: delete log entry: %w", err)
			}
		}
		if err := logb.Put(logKey(c.meta.Origin, c.meta.Seq), key); err != nil {
			return fmt.Errorf("store: put log entry: %w", err)
		}
	}
	return nil
}

// merge folds the request into its group and returns its event, if it
// changed anything.
func (b *batch) merge() (Event, bool) {
	g := b.g
	for _, c := range b.order {
		g.changes.Insert(c.path, c)
	}
	vecChanged := false
	for o, seq := range b.vector {
		if g.vector[o] != seq {
			g.vector[o] = seq
			g.dirtyVec[o] = struct{}{}
			vecChanged = true
		}
	}
	g.lastIssued = b.lastIssued
	if len(b.order) == 0 && !vecChanged {
		return Event{}, false
	}
	g.dirty = true
	ev := Event{Nodes: make([]Node, len(b.order)), Vector: g.vector.Clone()}
	for i, c := range b.order {
		ev.Nodes[i] = Node{Path: c.path, Meta: c.meta, Data: c.data()}
	}
	return ev, true
}

// metas returns the metadata of the request's changes, without data.
func (b *batch) metas() []Node {
	if len(b.order) == 0 {
		return nil
	}
	out := make([]Node, len(b.order))
	for i, c := range b.order {
		out[i] = Node{Path: c.path, Meta: c.meta}
	}
	return out
}
