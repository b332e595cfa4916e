package store

import (
	"context"
	"fmt"
	"github.com/replds/replds/nodepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// FeedOptions selects what a Feed delivers.
type FeedOptions struct {
	// Prefixes are the subtrees to follow, on segment boundaries ("/" is
	// the whole tree); nil means "/". They should not overlap.
	Prefixes []string
	// From is what the consumer holds already: writes it covers are not
	// replayed. nil replays every winner.
	From Vector
	// Keep filters nodes before their data is copied out; nil keeps all.
	// It may run inside a read transaction: it must not block or call the
	// Store.
	Keep func(path string, m Meta) bool
	// MaxNodes and MaxBytes bound a replay page (0 = the Scan defaults; a
	// page holds at least one node). A live page is one commit's nodes.
	MaxNodes int
	MaxBytes int
	// Buffer is how many commits the feed may fall behind before it drops
	// its subscription and catches up from the store instead (at least 1).
	Buffer int
}

// FeedPage is one step of a Feed.
type FeedPage struct {
	// Nodes are winners under the feed's prefixes that Keep accepted and
	// the consumer lacks, tombstones included, with their data (shared
	// with other subscribers for live pages: read-only).
	Nodes []Node
	// Vector is what the consumer holds once it has every page up to this
	// one: From raised by the feed's progress. It is the feed's copy to
	// keep; a bookmark to resume from.
	Vector Vector
	// Replay marks a page read from the store rather than a live commit.
	// Caught marks the last page of a catch-up: the consumer then holds
	// every winner under the prefixes as of Vector.
	Replay bool
	Caught bool
}

// Feed delivers the winners under a set of prefixes that a consumer lacks,
// then every later commit, in pages (see Store.Feed). A Feed is used by
// one goroutine; the caller must Close it.
type Feed struct {
	s       *Store
	opts    FeedOptions
	covered Vector
	sub     *Subscription
	replay  *feedReplay
	err     error
}

// feedReplay is the state of one catch-up: the store's vector when it
// began, and where the reading stands, through the change index (origins,
// cursor) or a scan of the prefixes (root, after).
type feedReplay struct {
	target  Vector
	upto    map[uint64]uint64
	byIndex bool
	origins []uint64
	cursor  uint64
	root    int
	after   string
}

// indexCost is how many nodes a prefix scan reads in the time the change
// index takes for one change (a log entry, then a node found by path).
const indexCost = 4

// replayReadFactor bounds what one catch-up page reads in its read
// transaction, kept or not (log entries by index, nodes by scan), as a
// multiple of the page's node limit: a catch-up that keeps little still
// ends its transactions and looks at its context that often.
const replayReadFactor = 16

// maxReplayRead is what one catch-up page may read.
func (f *Feed) maxReplayRead() int {
	maxNodes, _ := pageLimits(f.opts.MaxNodes, f.opts.MaxBytes)
	return replayReadFactor * maxNodes
}

// Feed returns a feed of what a consumer holding opts.From lacks under
// opts.Prefixes. Its first pages, the catch-up, replay every winner there
// (tombstones included) whose write From does not cover, as of a vector
// taken after subscribing; the last of them is marked Caught and carries
// that vector. Then come live pages, one per commit that changed something
// the consumer lacks, in commit order. Every page carries the vector the
// consumer holds once it has the page.
//
// The catch-up reads the change index (per origin, in seq order, from
// From's entry) when the store's vector is little ahead of From, and scans
// the prefixes (in path order) when it is far ahead: whichever reads less.
// When the consumer falls more than opts.Buffer commits behind, the feed
// drops its subscription and catches up again from the last vector it
// delivered: nothing is lost and nothing unbounded is held, at the price
// of pages that may repeat what live pages sent (a consumer applies nodes
// by version anyway). Pages are bounded by opts.MaxNodes and
// opts.MaxBytes, live pages by the commit.
func (s *Store) Feed(opts FeedOptions) (*Feed, error) {
	if opts.Prefixes == nil {
		opts.Prefixes = []string{"/"}
	}
	for _, p := range opts.Prefixes {
		if err := nodepath.ValidatePrefix(p); err != nil {
			return nil, err
		}
	}
	opts.Buffer = max(opts.Buffer, 1)
	f := &Feed{s: s, opts: opts, covered: opts.From.Clone()}
	return f, nil
}

// Vector returns a copy of what the consumer holds after the pages Next
// returned so far.
func (f *Feed) Vector() Vector { return f.covered.Clone() }

// Close ends the feed's subscription. It is idempotent.
func (f *Feed) Close() {
	if f.sub != nil {
		f.sub.Close()
		f.sub = nil
	}
	f.replay = nil
	if f.err == nil {
		f.err = ErrClosed
	}
}

// Next returns the next page. It blocks while waiting for a live commit,
// and reads on while a catch-up yields nothing to deliver, until ctx ends:
// it then returns ctx.Err() (a catch-up page already read is returned
// first, whatever ctx), and a later call carries on where this one
// stopped, losing nothing. It returns ErrClosed
// once the store or the feed is closed, and a storage error if a replay
// read fails; the feed is then unusable.
func (f *Feed) Next(ctx context.Context) (FeedPage, error) {
	page, ok, err := f.next(ctx.Done(), true)
	if err == nil && !ok {
		return FeedPage{}, ctx.Err()
	}
	return page, err
}

// TryNext is Next without waiting: ok is false when the next page would
// be a commit not made yet.
func (f *Feed) TryNext() (page FeedPage, ok bool, err error) {
	return f.next(nil, false)
}

// next is Next (block) or TryNext; done ends the wait.
func (f *Feed) next(done <-chan struct{}, block bool) (FeedPage, bool, error) {
	for {
		if f.err != nil {
			return FeedPage{}, false, f.err
		}
		if f.sub == nil {
			f.sub = f.s.Subscribe(f.opts.Buffer)
			// The vector is taken after subscribing: every later commit
			// is in the subscription, every earlier one in the store.
			r, err := f.startReplay(f.s.Vector())
			if err != nil {
				f.fail(err)
				return FeedPage{}, false, err
			}
			f.replay = r
		}
		if f.replay != nil {
			page, ok, err := f.replayPage()
			if err != nil {
				f.fail(err)
				return FeedPage{}, false, err
			}
			if ok {
				return page, true, nil
			}
			// Nothing to deliver from this part of the catch-up (an origin
			// done, or only filtered nodes): a long one stays interruptible.
			select {
			case <-done:
				return FeedPage{}, false, nil
			default:
			}
			continue
		}
		var ev Event
		var open bool
		if block {
			select {
			case <-done:
				return FeedPage{}, false, nil
			case ev, open = <-f.sub.C():
			}
		} else {
			select {
			case ev, open = <-f.sub.C():
			default:
				return FeedPage{}, false, nil
			}
		}
		if !open {
			if f.sub.Overflowed() {
				f.s.log.Debug("feed fell behind; catching up", "prefixes", f.opts.Prefixes)
				f.sub = nil
				continue
			}
			f.fail(ErrClosed)
			return FeedPage{}, false, ErrClosed
		}
		var nodes []Node
		for _, n := range ev.Nodes {
			if f.under(n.Path) && f.keep(n.Path, n.Meta) {
				nodes = append(nodes, n)
			}
		}
		raise(f.covered, ev.Vector)
		if len(nodes) > 0 {
			return FeedPage{Nodes: nodes, Vector: f.covered.Clone()}, true, nil
		}
	}
}

// fail makes the feed unusable with err.
func (f *Feed) fail(err error) {
	f.Close()
	f.err = err
}

// under reports whether path lies in one of the feed's prefixes.
func (f *Feed) under(path string) bool {
	for _, p := range f.opts.Prefixes {
		if nodepath.Under(path, p) {
			return true
		}
	}
	return false
}

// keep reports whether the consumer lacks the node and Keep takes it.
func (f *Feed) keep(path string, m Meta) bool {
	if f.covered.Covers(m.Origin, m.Seq) {
		return false
	}
	return f.opts.Keep == nil || f.opts.Keep(path, m)
}

// raise raises the entries of v to those of o that are higher. A store's
// vector only grows, so the vectors a feed sees are ordered.
func raise(v, o Vector) {
	for origin, seq := range o {
		if seq > v[origin] {
			v[origin] = seq
		}
	}
}

// startReplay plans a catch-up to target, choosing its source: the change
// index costs about indexCost per change after the consumer's vector, a
// scan one per node under the prefixes.
//
// The index is read per origin from the consumer's entry up to the last
// entry the log held when the catch-up began, not just up to target:
// nodes that came by hash-tree repair carry seqs no vector covers yet.
// Later entries come through the subscription.
func (f *Feed) startReplay(target Vector) (*feedReplay, error) {
	r := &feedReplay{target: target, upto: map[uint64]uint64{}}
	var heads map[uint64]uint64
	if err := f.s.view(func(tx *bolt.Tx) error {
		var err error
		heads, err = logHeads(tx)
		return err
	}); err != nil {
		return nil, err
	}
	delta := uint64(0)
	for o, head := range heads {
		from := f.covered[o]
		if head <= from {
			continue
		}
		r.origins = append(r.origins, o)
		r.upto[o] = head
		// Entries above the vector are the odd repaired node: count one.
		delta += min(head, max(target[o], from+1)) - from
	}
	slices.Sort(r.origins)
	r.byIndex = f.s.holdsAtLeast(f.opts.Prefixes, delta*indexCost)
	if r.byIndex && len(r.origins) > 0 {
		r.cursor = f.covered[r.origins[0]]
	}
	return r, nil
}

// logHeads returns the highest seq in the log of every origin it holds:
// two seeks per origin.
func logHeads(tx *bolt.Tx) (map[uint64]uint64, error) {
	heads := map[uint64]uint64{}
	c := tx.Bucket(bucketLog).Cursor()
	k, _ := c.First()
	for k != nil {
		o, _, err := decodeLogKey(k)
		if err != nil {
			return nil, fmt.Errorf("store: log: %w", err)
		}
		next, _ := c.Seek(logKey(o, ^uint64(0)))
		if next != nil {
			if no, _, _ := decodeLogKey(next); no == o {
				// seq ^0 itself: the last possible entry of o.
				heads[o] = ^uint64(0)
				k, _ = c.Next()
				continue
			}
			k, _ = c.Prev()
		} else {
			k, _ = c.Last()
		}
		_, seq, err := decodeLogKey(k)
		if err != nil {
			return nil, fmt.Errorf("store: log: %w", err)
		}
		heads[o] = seq
		k = next
	}
	return heads, nil
}

// holdsAtLeast reports whether prefixes hold at least n nodes, tombstones
// included. It walks at most n nodes, whatever the size of the store, and
// none when n exceeds the store's size (a consumer starting from nothing):
// a prefix cannot hold more nodes than the store.
func (s *Store) holdsAtLeast(prefixes []string, n uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if total := s.stats.Nodes + s.stats.Tombstones; n > total {
		return false
	}
	if slices.Contains(prefixes, "/") {
		return true
	}
	seen := uint64(0)
	for _, p := range prefixes {
		stopped := walkUnder(s.tree, p, true, func(string, any) bool {
			seen++
			return seen < n
		})
		if stopped {
			return true
		}
	}
	return seen >= n
}

// replayPage reads the next page of the catch-up; ok is false when it
// holds nothing to deliver yet (an origin done, or only filtered nodes).
func (f *Feed) replayPage() (FeedPage, bool, error) {
	r := f.replay
	var nodes []Node
	done := false
	err := f.s.view(func(tx *bolt.Tx) error {
		var err error
		if r.byIndex {
			nodes, done, err = f.indexPage(tx)
		} else {
			nodes, done, err = f.scanPage(tx)
		}
		return err
	})
	if err != nil {
		return FeedPage{}, false, err
	}
	if done {
		raise(f.covered, r.target)
		f.replay = nil
		return FeedPage{Nodes: nodes, Vector: f.covered.Clone(), Replay: true, Caught: true}, true, nil
	}
	if len(nodes) == 0 {
		return FeedPage{}, false, nil
	}
	return FeedPage{Nodes: nodes, Vector: f.covered.Clone(), Replay: true}, true, nil
}

// indexPage reads a page of the current origin's changes up to the
// target; done reports the catch-up complete.
func (f *Feed) indexPage(tx *bolt.Tx) (nodes []Node, done bool, err error) {
	r := f.replay
	if len(r.origins) == 0 {
		return nil, true, nil
	}
	o := r.origins[0]
	nodes, last, more, err := changesPage(tx, changesRange{
		origin: o, after: r.cursor, upto: r.upto[o],
		keep:     func(path string, m Meta) bool { return f.under(path) && f.keep(path, m) },
		maxNodes: f.opts.MaxNodes, maxBytes: f.opts.MaxBytes, maxRead: f.maxReplayRead(),
	})
	if err != nil {
		return nil, false, err
	}
	r.cursor = last
	if !more {
		// Every winner of o up to the target went out: the consumer
		// covers o that far.
		r.origins = r.origins[1:]
		if r.target[o] > f.covered[o] {
			f.covered[o] = r.target[o]
		}
		if len(r.origins) > 0 {
			r.cursor = f.covered[r.origins[0]]
		}
	}
	return nodes, len(r.origins) == 0, nil
}

// scanPage reads a page of the current prefix; done reports the catch-up
// complete.
func (f *Feed) scanPage(tx *bolt.Tx) (nodes []Node, done bool, err error) {
	r := f.replay
	if r.root >= len(f.opts.Prefixes) {
		return nil, true, nil
	}
	nodes, next, err := scanPage(tx, ScanOptions{
		Prefix: f.opts.Prefixes[r.root], After: r.after, Keep: f.keep,
		MaxNodes: f.opts.MaxNodes, MaxBytes: f.opts.MaxBytes,
	}, f.maxReplayRead())
	if err != nil {
		return nil, false, err
	}
	r.after = next
	if next == "" {
		r.root++
	}
	return nodes, r.root >= len(f.opts.Prefixes), nil
}
