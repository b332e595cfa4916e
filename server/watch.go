package server

import (
	"hash/fnv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"replds/acl"
	"replds/nodepath"
	repldspb "replds/proto"
	"replds/store"
)

// watchBuffer is how many committed batches a Watch stream may fall behind
// before it drops its subscription and catches up from the store instead.
// The buffer is allocated up front (32 bytes an event) for every stream,
// idle or not, so it stays small: a stream that overflows loses nothing.
const watchBuffer = 64

// Watch replays what the client lacks under a prefix, then streams live
// changes. See the Watch section of docs/design.md for the protocol.
func (s *Server) Watch(req *repldspb.WatchRequest, stream repldspb.Replds_WatchServer) error {
	ctx := stream.Context()
	if err := nodepath.ValidatePrefix(req.Prefix); err != nil {
		return err
	}
	rules := s.sec.acls.Get()
	roots, readable, err := s.readable(ctx, req.Prefix)
	if err != nil {
		return err
	}
	stream = s.metrics.watchOpened(stream)
	defer s.metrics.watchClosed()
	w := &watchStream{
		s:        s,
		stream:   stream,
		prefix:   req.Prefix,
		roots:    roots,
		readable: readable,
		rules:    rules,
		token:    vectorFromProto(req.Token),
		scope:    aclFingerprint(rules, roots),
	}
	// The token records what the client could read when it was issued
	// (its scope). If that changed, what the token covers is not what the
	// client holds: replay everything readable now, as a reset, so the
	// client drops what it may no longer read and gets what it newly may.
	if len(w.token) > 0 && req.Token.GetScope() != w.scope {
		w.token = store.Vector{}
		w.reset = true
	}
	return w.run()
}

// aclFingerprint identifies the readable roots of a Watch under ACLs (0
// without ACLs: everything readable).
func aclFingerprint(rules *acl.ACL, roots []string) uint64 {
	if rules == nil {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(strings.Join(roots, "\x00")))
	return h.Sum64() | 1
}

// errRulesChanged ends a Watch stream when the ACLs change, so that the
// client reconnects under the new rules.
var errRulesChanged = status.Error(codes.Unavailable, "access rules changed; reconnect")

// watchStream is the state of one Watch RPC.
type watchStream struct {
	s      *Server
	stream repldspb.Replds_WatchServer
	prefix string
	// roots are the readable subtrees under prefix (prefix itself when all
	// of it is readable): replays scan only those.
	roots    []string
	readable func(string) bool
	// rules are the ACLs the stream was opened under.
	rules *acl.ACL
	// reset makes the next replay a reset: the client's state is replaced.
	reset bool
	// scope fingerprints what the client may read (see aclFingerprint);
	// every bookmark carries it.
	scope uint64
	// token covers everything the client has (its resume token, then the
	// last bookmark sent).
	token  store.Vector
	synced bool
}

func (w *watchStream) run() error {
	ctx := w.stream.Context()
	for {
		sub := w.s.store.Subscribe(watchBuffer)
		// The vector is taken after subscribing: every later commit is in
		// the subscription, every earlier one is in the store we scan.
		snap := w.s.store.Vector()
		if err := w.replay(snap); err != nil {
			sub.Close()
			return err
		}
		err := w.live(sub)
		sub.Close()
		if err != nil {
			return err
		}
		// The subscription overflowed: catch up from the store again,
		// from the last bookmark.
		w.s.log.Debug("watch fell behind; catching up", "prefix", w.prefix)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// keep reports whether a node must go to the client. Tombstones go too,
// even to a client that holds nothing: it needs them to refuse an older
// version of the path should it fail over to a server that lags behind.
func (w *watchStream) keep(path string, m store.Meta) bool {
	if w.readable != nil && !w.readable(path) {
		return false
	}
	return !w.token.Covers(m.Origin, m.Seq)
}

// replay sends every node under the prefix that the token does not cover,
// straight from the store in pages, then a bookmark at snap.
func (w *watchStream) replay(snap store.Vector) error {
	if w.reset {
		if err := w.stream.Send(&repldspb.WatchResponse{Reset_: true}); err != nil {
			return err
		}
		w.reset = false
	}
	for _, root := range w.roots {
		after := ""
		for {
			nodes, next, err := w.s.store.Scan(store.ScanOptions{
				Prefix: root,
				After:  after,
				Keep: func(p string, m store.Meta) bool {
					return w.keep(p, m)
				},
			})
			if err != nil {
				return err
			}
			if len(nodes) > 0 {
				if err := w.stream.Send(&repldspb.WatchResponse{Nodes: nodesToProto(nodes)}); err != nil {
					return err
				}
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	w.advance(snap)
	msg := &repldspb.WatchResponse{Bookmark: w.bookmark(), Synced: !w.synced}
	w.synced = true
	return w.stream.Send(msg)
}

// advance raises the token to v when v is later (a server's vector only
// grows, so vectors seen here are ordered).
func (w *watchStream) advance(v store.Vector) {
	for o, seq := range v {
		if seq > w.token[o] {
			w.token[o] = seq
		}
	}
}

// live streams committed batches until the stream ends (error) or the
// subscription overflows (nil).
func (w *watchStream) live(sub *store.Subscription) error {
	ctx := w.stream.Context()
	tick := time.NewTicker(w.s.cfg.BookmarkInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.s.stopping:
			return store.ErrClosed
		case <-tick.C:
			if w.rulesChanged() {
				return errRulesChanged
			}
			// A bookmark every tick, even when nothing changed: it is
			// also the heartbeat that lets a client tell a quiet stream
			// from a server that stopped answering (watcher IdleTimeout).
			if err := w.stream.Send(&repldspb.WatchResponse{Bookmark: w.bookmark()}); err != nil {
				return err
			}
		case ev, ok := <-sub.C():
			if !ok {
				if sub.Overflowed() {
					return nil
				}
				return store.ErrClosed
			}
			if err := w.onEvent(ev); err != nil {
				return err
			}
		}
	}
}

// rulesChanged reports whether the ACLs changed since the stream opened.
func (w *watchStream) rulesChanged() bool {
	return w.s.sec != nil && w.s.sec.acls.Get() != w.rules
}

// onEvent sends what a committed batch changed under the prefix, with a
// bookmark; a batch that changed nothing visible only moves the token.
func (w *watchStream) onEvent(ev store.Event) error {
	if w.rulesChanged() {
		return errRulesChanged
	}
	var out []*repldspb.Node
	for _, n := range ev.Nodes {
		if nodepath.Under(n.Path, w.prefix) && w.keep(n.Path, n.Meta) {
			out = append(out, nodeToProto(n))
		}
	}
	w.advance(ev.Vector)
	if len(out) == 0 {
		return nil
	}
	return w.stream.Send(&repldspb.WatchResponse{Nodes: out, Bookmark: w.bookmark()})
}

// bookmark returns the resume token covering everything sent so far.
func (w *watchStream) bookmark() *repldspb.Vector {
	v := vectorToProto(w.token)
	v.Scope = w.scope
	return v
}
