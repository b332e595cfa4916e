package replicate

import (
	"context"
	"fmt"
	"maps"

	"github.com/replds/replds/follow"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

var _ follow.Sink = (*runner)(nil)

// Token returns the token to resume from: the persisted one, lowered per
// source origin to what this server's store holds, so that a runner taking
// over does not skip what its predecessor applied but this server has not
// received yet (it comes again, a no-op where it is here already).
func (r *runner) Token(ctx context.Context) (*repldspb.Vector, error) {
	r.refreshOwn(ctx)
	local := r.k.cfg.Vector()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions++
	if r.sessions > 1 {
		r.d.Reconnects++
		if m := r.k.cfg.Metrics; m != nil {
			m.reconnect(r.job.Name)
		}
	}
	if r.d.Token == nil || r.inFull {
		return nil, nil
	}
	vec := r.d.Token.vector()
	for o, s := range vec {
		if !r.own[o] && local[o] < s {
			vec[o] = local[o]
		}
	}
	v := wire.VectorToProto(vec)
	v.Scope = r.d.Token.Scope
	return v, nil
}

// Reset begins a complete replay: an initial copy.
func (r *runner) Reset(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFull = true
	r.seen = map[string]struct{}{}
	r.d.Copied = 0
	if r.st.State != StateStopping {
		r.st.State = StateInitialCopy
	}
	r.dirty = true
	return nil
}

// Apply applies one page atomically: its nodes under the source prefix,
// not excluded and not of this cluster, rewritten to the destination
// prefix, with their own versions, origins and seqs.
func (r *runner) Apply(ctx context.Context, p follow.Page) error {
	nodes := make([]store.Node, 0, len(p.Nodes))
	var bytes uint64
	r.mu.Lock()
	for _, pn := range p.Nodes {
		bytes += uint64(len(pn.Data))
		if r.own[pn.Origin] {
			continue
		}
		path, ok := r.spec.rewrite(pn.Path)
		if !ok {
			continue
		}
		n := wire.NodeFromProto(pn)
		n.Path = path
		nodes = append(nodes, n)
		if r.seen != nil {
			r.seen[path] = struct{}{}
		}
	}
	r.mu.Unlock()
	changed := 0
	if len(nodes) > 0 {
		var err error
		if changed, err = r.k.cfg.Writer.ApplyAdvance(ctx, nodes, nil); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.d.Received += uint64(len(p.Nodes))
	r.d.Applied += uint64(changed)
	r.d.Bytes += bytes
	if r.inFull {
		r.d.Copied += uint64(len(p.Nodes))
	}
	r.dirty = true
	r.mu.Unlock()
	if m := r.k.cfg.Metrics; m != nil {
		m.applied(r.job.Name, len(p.Nodes), changed, bytes)
	}
	return nil
}

// Bookmark records the token; the main goroutine publishes it (at most
// every PublishEvery). A complete replay's end moves the job to following,
// after deleting the replicated nodes it did not bring (dropStale).
func (r *runner) Bookmark(ctx context.Context, b follow.Bookmark) error {
	r.mu.Lock()
	if r.inFull && !b.Full {
		r.mu.Unlock()
		return nil // mid-replay: resuming from it would not be a complete copy
	}
	if r.inFull {
		seen := r.seen
		r.mu.Unlock()
		if err := r.dropStale(ctx, seen); err != nil {
			return err
		}
		r.mu.Lock()
		r.seen = nil
	}
	defer r.mu.Unlock()
	tok := tokenFromProto(b.Token)
	if r.inFull || r.d.Token == nil || !maps.Equal(tok.Vector, r.d.Token.Vector) || tok.Scope != r.d.Token.Scope {
		// An idle source's bookmarks change nothing: no status write.
		r.d.Token, r.dirty = tok, true
	}
	r.inFull = false
	if r.st.State == StateInitialCopy || r.st.State == StateStarting {
		r.st.State, r.d.Copied, r.dirty = StateFollowing, 0, true
	}
	return nil
}

// dropStale deletes, at the end of a complete replay, the replicated
// nodes under the destination prefix that the replay did not bring: the
// source no longer holds them, and their deletes may be gone from it
// (collected tombstones), so nothing else would ever delete them here.
// Nodes of this cluster's own origins (written here directly) and paths
// the job does not replicate (excluded) stay. The deletes are this
// server's own writes, so they win over the stale versions.
func (r *runner) dropStale(ctx context.Context, seen map[string]struct{}) error {
	r.mu.Lock()
	own := maps.Clone(r.own)
	r.mu.Unlock()
	var stale []string
	r.k.cfg.Walk(r.spec.DestPrefix, func(path string, m store.Meta) bool {
		if _, ok := seen[path]; !ok && !m.Deleted && !own[m.Origin] && r.spec.replicated(path) {
			stale = append(stale, path)
		}
		return true
	})
	for len(stale) > 0 {
		n := min(len(stale), 1000)
		ws := make([]store.Write, n)
		for i, p := range stale[:n] {
			ws[i] = store.Write{Path: p, Delete: true}
		}
		if _, err := r.k.cfg.Writer.Write(ctx, ws); err != nil {
			return fmt.Errorf("replicate: delete what the source no longer holds: %w", err)
		}
		stale = stale[n:]
		r.log.Info("deleted replicated nodes the source no longer holds", "count", n)
	}
	return nil
}
