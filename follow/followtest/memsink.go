// Package followtest holds what tests of a follow.Follower share: MemSink,
// an in-memory follow.Sink.
package followtest

import (
	"context"
	"maps"
	"sync"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/lww"
	repldspb "github.com/replds/replds/proto"
)

// MemSink is a follow.Sink over a map: the smallest faithful implementation
// of the contract (last-write-wins per path, the token persisted only by a
// bookmark, a complete replay deletes what it lacked). Its methods are safe
// for concurrent use, so a test reads it while a Follower feeds it.
type MemSink struct {
	// Hook, when set (before the sink is used), is called at the start of
	// every Sink method with the method's name ("Token", "Reset", "Apply",
	// "Bookmark"), without the sink's lock: it may block (a slow disk), and
	// its error, if any, is the method's.
	Hook func(ctx context.Context, method string) error

	mu      sync.Mutex
	nodes   map[string]*repldspb.Node
	seen    map[string]bool
	token   *repldspb.Vector
	full    bool // a reset's replay has not ended
	tokens  []*repldspb.Vector
	applied map[string]int // nodes applied, by path
	synced  int
}

var _ follow.Sink = (*MemSink)(nil)

// NewMemSink returns an empty sink: its first session replays in full.
func NewMemSink() *MemSink {
	return &MemSink{nodes: map[string]*repldspb.Node{}, seen: map[string]bool{}, applied: map[string]int{}}
}

func (s *MemSink) hook(ctx context.Context, method string) error {
	if s.Hook == nil {
		return nil
	}
	return s.Hook(ctx, method)
}

// Token returns the token of the last bookmark, nil while a reset's replay
// has not ended, and records it (see Tokens).
func (s *MemSink) Token(ctx context.Context) (*repldspb.Vector, error) {
	if err := s.hook(ctx, "Token"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.token
	if s.full {
		t = nil
	}
	s.tokens = append(s.tokens, t)
	return t, nil
}

// Reset starts a complete replay: nothing seen yet.
func (s *MemSink) Reset(ctx context.Context) error {
	if err := s.hook(ctx, "Reset"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full = true
	clear(s.seen)
	return nil
}

// Apply keeps each node that is newer than the one held for its path.
func (s *MemSink) Apply(ctx context.Context, p follow.Page) error {
	if err := s.hook(ctx, "Apply"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range p.Nodes {
		s.applied[n.Path]++
		if p.Full {
			s.seen[n.Path] = true
		}
		old, ok := s.nodes[n.Path]
		if !ok || (lww.Stamp{Version: n.Version, Origin: n.Origin}).Newer(lww.Stamp{Version: old.Version, Origin: old.Origin}) {
			s.nodes[n.Path] = n
		}
	}
	return nil
}

// Bookmark persists the token, after deleting what a complete replay
// lacked.
func (s *MemSink) Bookmark(ctx context.Context, b follow.Bookmark) error {
	if err := s.hook(ctx, "Bookmark"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.Full {
		for p := range s.nodes {
			if !s.seen[p] {
				delete(s.nodes, p)
			}
		}
		s.full = false
	}
	s.token = b.Token
	if b.Synced {
		s.synced++
	}
	return nil
}

// Live returns the live leaves held and their data.
func (s *MemSink) Live() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for p, n := range s.nodes {
		if !n.Deleted {
			out[p] = string(n.Data)
		}
	}
	return out
}

// Applied returns how many nodes were applied, by path, repeats included.
func (s *MemSink) Applied() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.applied)
}

// Tokens returns the tokens Token returned, one per session the follower
// began.
func (s *MemSink) Tokens() []*repldspb.Vector {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*repldspb.Vector(nil), s.tokens...)
}

// Synced returns how many bookmarks with Synced set were persisted, and
// the token persisted last (nil if none).
func (s *MemSink) Synced() (n int, token *repldspb.Vector) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced, s.token
}
