package server

import (
	"time"

	repldspb "replds/proto"
	"replds/store"
)

// watchBuffer is how many committed batches a Watch stream may fall behind
// before it drops its subscription and catches up from the store instead.
const watchBuffer = 1024

// Watch replays what the client lacks under a prefix, then streams live
// changes. See the Watch section of DESIGN.md for the protocol.
func (s *Server) Watch(req *repldspb.WatchRequest, stream repldspb.Replds_WatchServer) error {
	const method = "Watch"
	ctx := stream.Context()
	if err := store.ValidatePrefix(req.Prefix); err != nil {
		return toStatus(s.log, method, err)
	}
	roots, readable, err := s.readable(ctx, req.Prefix)
	if err != nil {
		return toStatus(s.log, method, err)
	}
	stream = s.metrics.watchOpened(stream)
	defer s.metrics.watchClosed()
	w := &watchStream{
		s:        s,
		stream:   stream,
		prefix:   req.Prefix,
		roots:    roots,
		readable: readable,
		token:    VectorFromProto(req.Token),
	}
	return toStatus(s.log, method, w.run())
}

// watchStream is the state of one Watch RPC.
type watchStream struct {
	s      *Server
	stream repldspb.Replds_WatchServer
	prefix string
	// roots are the readable subtrees under prefix (prefix itself when all
	// of it is readable): replays scan only those.
	roots    []string
	readable func(string) bool
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
	msg := &repldspb.WatchResponse{Bookmark: vectorToProto(w.token), Synced: !w.synced}
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
		case <-w.s.done:
			return store.ErrClosed
		case <-tick.C:
			// A bookmark every tick, even when nothing changed: it is
			// also the heartbeat that lets a client tell a quiet stream
			// from a server that stopped answering (watcher IdleTimeout).
			if err := w.stream.Send(&repldspb.WatchResponse{Bookmark: vectorToProto(w.token)}); err != nil {
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

// onEvent sends what a committed batch changed under the prefix, with a
// bookmark; a batch that changed nothing visible only moves the token.
func (w *watchStream) onEvent(ev store.Event) error {
	var out []*repldspb.Node
	for _, n := range ev.Nodes {
		if store.Under(n.Path, w.prefix) && w.keep(n.Path, n.Meta) {
			out = append(out, nodeToProto(n))
		}
	}
	w.advance(ev.Vector)
	if len(out) == 0 {
		return nil
	}
	return w.stream.Send(&repldspb.WatchResponse{Nodes: out, Bookmark: vectorToProto(w.token)})
}
