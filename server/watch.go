package server

import (
	"context"
	"errors"
	"hash/fnv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
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
	release, reason, err := s.watches.open(ctx, identity(ctx))
	if err != nil {
		s.metrics.refused(reason)
		return err
	}
	defer release()
	sender := &watchSender{Replds_WatchServer: s.metrics.watchOpened(stream), s: s}
	defer s.metrics.watchClosed()
	defer sender.close()
	w := &watchStream{
		s:        s,
		stream:   sender,
		roots:    roots,
		readable: readable,
		rules:    rules,
		scope:    aclFingerprint(rules, roots),
	}
	// A token is kept for the life of the stream: one longer than any
	// cluster's history is not decoded, and the client gets a full replay.
	if n := len(req.Token.GetEntries()); n > s.cfg.MaxTokenOrigins {
		s.log.Info("watch resume token too long; replaying in full", "identity", identity(ctx),
			"origins", n, "max", s.cfg.MaxTokenOrigins)
		s.metrics.refused("token_origins")
		w.reset = true
	} else {
		w.token = wire.VectorFromProto(req.Token)
	}
	// The token records what the client could read when it was issued
	// (its scope). If that changed, what the token covers is not what the
	// client holds: replay everything readable now, as a reset, so the
	// client drops what it may no longer read and gets what it newly may.
	if w.token == nil {
		w.token = store.Vector{}
	} else if len(w.token) > 0 && req.Token.GetScope() != w.scope {
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
	// roots are the readable subtrees under the prefix (the prefix itself
	// when all of it is readable): the feed follows only those.
	roots    []string
	readable func(string) bool
	// rules are the ACLs the stream was opened under.
	rules *acl.ACL
	// reset is sent before the first page: the client's state is replaced
	// by the replay.
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
	// The stream ends with the client, or with cause store.ErrClosed when
	// the server starts stopping, so that the graceful stop does not wait
	// for it. AfterFunc starts no goroutine unless the server stops.
	ctx, cancel := context.WithCancelCause(w.stream.Context())
	defer cancel(nil)
	defer context.AfterFunc(w.s.stopping, func() { cancel(store.ErrClosed) })()
	feed, err := w.openFeed()
	if err != nil {
		return err
	}
	defer feed.Close()
	if w.reset {
		if err := w.stream.Send(&repldspb.WatchResponse{Reset_: true}); err != nil {
			return err
		}
	}
	for {
		// One deadline context per bookmark interval, not per page.
		tick, cancelTick := context.WithTimeout(ctx, w.s.cfg.BookmarkInterval)
		err := w.sendUntil(tick, feed)
		cancelTick()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			return err
		}
		if w.rulesChanged() {
			return errRulesChanged
		}
		// A bookmark every interval, even when nothing changed: it is also
		// the heartbeat that lets a client tell a quiet stream from a
		// server that stopped answering (its idle timeout).
		w.token = feed.Vector()
		if err := w.stream.Send(&repldspb.WatchResponse{Bookmark: w.bookmark()}); err != nil {
			return err
		}
	}
}

// sendUntil sends the feed's pages until tick ends (nil) or something
// fails.
func (w *watchStream) sendUntil(tick context.Context, feed *store.Feed) error {
	for {
		page, err := feed.Next(tick)
		if errors.Is(err, context.DeadlineExceeded) || (err != nil && tick.Err() != nil) {
			return nil
		}
		if err != nil {
			return err
		}
		if !page.Replay && w.rulesChanged() {
			return errRulesChanged
		}
		if err := w.send(page); err != nil {
			return err
		}
	}
}

// openFeed returns the feed of the stream's readable roots from its token.
// Readable filters nodes by the ACLs; the feed drops what the token
// covers. Tombstones go too, even to a client that holds nothing: it needs
// them to refuse an older version of the path should it fail over to a
// server that lags behind.
func (w *watchStream) openFeed() (*store.Feed, error) {
	return w.s.store.Feed(store.FeedOptions{
		Prefixes: w.roots,
		From:     w.token,
		Keep: func(path string, _ store.Meta) bool {
			return w.readable == nil || w.readable(path)
		},
		Buffer:   watchBuffer,
		MaxBytes: w.s.cfg.WatchPageBytes,
	})
}

// send sends a page: replayed nodes as they are, followed by a bookmark
// once the replay is complete (marked Synced the first time); live nodes
// with a bookmark.
func (w *watchStream) send(page store.FeedPage) error {
	w.token = page.Vector
	if !page.Replay {
		return w.stream.Send(&repldspb.WatchResponse{Nodes: wire.NodesToProto(page.Nodes), Bookmark: w.bookmark()})
	}
	if len(page.Nodes) > 0 {
		if err := w.stream.Send(&repldspb.WatchResponse{Nodes: wire.NodesToProto(page.Nodes)}); err != nil {
			return err
		}
	}
	if !page.Caught {
		return nil
	}
	msg := &repldspb.WatchResponse{Bookmark: w.bookmark(), Synced: !w.synced}
	w.synced = true
	return w.stream.Send(msg)
}

// rulesChanged reports whether the ACLs changed since the stream opened.
func (w *watchStream) rulesChanged() bool {
	return w.s.sec != nil && w.s.sec.acls.Get() != w.rules
}

// bookmark returns the resume token covering everything sent so far.
func (w *watchStream) bookmark() *repldspb.Vector {
	v := wire.VectorToProto(w.token)
	v.Scope = w.scope
	return v
}
