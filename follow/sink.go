package follow

import (
	"context"
	"time"

	repldspb "github.com/replds/replds/proto"
)

// Page is one message's nodes, in stream order.
type Page struct {
	// Nodes are the nodes received. The follower does not keep or modify
	// them after Apply returns: the sink may keep them.
	Nodes []*repldspb.Node
	// Full says that the page belongs to a complete replay (the session
	// started from a nil token, or the server sent a reset): the paths it
	// holds are to be noted as seen, for the Bookmark that ends the replay.
	Full bool
}

// Bookmark ends a batch: the pages since the previous one bring the sink
// to what the server held at Token.
type Bookmark struct {
	// Token is the vector to resume from once the batch is applied. The
	// sink persists it (with the batch) and returns it from Token.
	Token *repldspb.Vector
	// Synced says that the server's replay is over: the sink now matches
	// the server as of Token.
	Synced bool
	// Full says that this bookmark ends a complete replay: every path the
	// replay's pages did not contain is gone on the server, and the sink
	// deletes it.
	Full bool
}

// Sink receives what a Follower reads from Watch streams: the replication
// job applies it to a store, the pull client to files.
//
// The follower calls the methods from the goroutine running Run, one at a
// time, never concurrently, in stream order: Token once per session
// (before the stream opens) and Reset if it returned nil (see Start), then
// for each message Reset (if the message says so), Apply (if it has nodes)
// and Bookmark (if it ends a batch).
// A method may block (a slow disk, a trigger): the idle timeout measures
// the server's silence, not the sink's work. ctx is Run's: it ends only
// when Run must return, so a sink need not guard against a session's end.
//
// An error from any method ends the session like a network error: the
// follower backs off, reconnects (to the next server) and calls Token
// again, so the sink sees again everything after the token it returns.
// Apply must therefore be idempotent per node (last-write-wins on
// lww.Stamp makes a repeated node a no-op), and a failed Bookmark must
// leave the previous token in place. An error wrapping ErrPermanent ends
// Run instead, with that error.
type Sink interface {
	// Token returns the vector to resume from: the Token of the last
	// Bookmark the sink persisted, or nil for a complete replay (nothing
	// persisted yet, or a Reset whose replay has not ended). The sink may
	// do its per-session work here (tidy up after a failed session); the
	// start of a complete replay is Reset's, not Token's.
	Token(ctx context.Context) (*repldspb.Vector, error)
	// Reset says that a complete replay begins: the session starts from a
	// nil token, or the server cannot resume from the sink's token. It
	// runs up to a Bookmark with Full set, and no path counts as seen yet:
	// paths an earlier, failed replay brought are not, or the sink would
	// keep what was deleted since. Until that bookmark is persisted, Token
	// must return nil, so that a session that fails midway replays in full
	// again.
	Reset(ctx context.Context) error
	// Apply applies one page. Pages come between bookmarks, not at batch
	// boundaries: what the sink persists of a page is keyed by node
	// version, so a page applied twice changes nothing.
	Apply(ctx context.Context, p Page) error
	// Bookmark ends the open batch: the sink persists b.Token (atomically
	// with its end-of-batch work, such as deleting what a full replay
	// lacked) and returns it from Token from then on.
	Bookmark(ctx context.Context, b Bookmark) error
}

// Timer is an optional Sink capability: work due at a time the sink
// chooses (the pull client's trigger quiescence windows), done between
// messages on Run's goroutine, never concurrently with the Sink methods.
type Timer interface {
	// Due returns when Tick should next be called, and false when nothing
	// is scheduled. It must not block.
	Due() (t time.Time, ok bool)
	// Tick does the work that is due. An error ends the session as a Sink
	// error does.
	Tick(ctx context.Context) error
}

// Start begins a session on s: it asks s for its token and, when there is
// none, tells s that a complete replay begins (Reset). It returns the token
// to watch from and whether the session replays in full, Handle's full.
func Start(ctx context.Context, s Sink) (token *repldspb.Vector, full bool, err error) {
	token, err = s.Token(ctx)
	if err != nil {
		return nil, false, err
	}
	if token == nil {
		if err := s.Reset(ctx); err != nil {
			return nil, false, err
		}
	}
	return token, token == nil, nil
}

// Handle hands one Watch message to s: Reset, then Apply, then Bookmark,
// as the message calls for. full says whether the message belongs to a
// complete replay (the session started from a nil token, or a reset came);
// Handle updates it. It reports whether the message ended a batch with
// the server synced, and stops at the first error. With Start, it is the
// follower's whole protocol without a transport: tests and simulations
// feed it messages directly.
func Handle(ctx context.Context, s Sink, msg *repldspb.WatchResponse, full *bool) (synced bool, err error) {
	if msg.Reset_ {
		if err := s.Reset(ctx); err != nil {
			return false, err
		}
		*full = true
	}
	if len(msg.Nodes) > 0 {
		if err := s.Apply(ctx, Page{Nodes: msg.Nodes, Full: *full}); err != nil {
			return false, err
		}
	}
	if msg.Bookmark == nil {
		return false, nil
	}
	b := Bookmark{Token: msg.Bookmark, Synced: msg.Synced, Full: msg.Synced && *full}
	if err := s.Bookmark(ctx, b); err != nil {
		return false, err
	}
	if b.Full {
		*full = false
	}
	return msg.Synced, nil
}
