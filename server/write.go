package server

import (
	"context"
	"time"

	"github.com/replds/replds/store"
)

// Writer is the path of every write this server originates, or imports
// for a job, into its store: the Store RPC goes through it, and so does
// every writer inside the server (a job publishing its status node, a
// restore, a cross-cluster replication), so that metrics, logging, the
// start check and shutdown see them in one place. Replication from peers
// (push, digest sync, repair) applies to the store directly. The pushers
// follow the store's own commits (store.Written), not the Writer.
//
// A Writer checks no ACLs and none of the rules of the reserved namespace
// (see doc.go): it is the server writing, and it may write anywhere,
// nodepath.Status included. A caller that acts for a client checks that
// client's rights first, as the Store RPC does, and a job acts with the
// rights of the identity that defined it, checked by its kind's
// JobValidator when the definition is written.
//
// Its methods are safe for concurrent use. They block until the batch is
// durable, and behave on ctx as store.Write does: if ctx ends before the
// committer starts on the batch, they return ctx.Err() and write nothing;
// after that, they wait for the commit. Once the server is closing
// (Close has begun) they fail with store.ErrClosed: Close waits for the
// calls in progress, then the pushers hand every write acknowledged until
// then to the peers. They copy the data they are given.
type Writer struct{ s *Server }

// Writer returns the server's internal write path. It may be called before
// Start, but its writes wait until Start has asked the peers what they
// have seen of this server's writes (startCheck), or ctx ends.
func (s *Server) Writer() *Writer { return &Writer{s: s} }

// begin waits until the start check has ended, so that no write reuses a
// seq a peer has seen (startCheck), and counts a write in progress, which
// Close waits for before the pushers drain; the caller calls
// s.writes.Done when the write ends. It fails with ctx's error, or with
// store.ErrClosed once the server is closing.
func (w *Writer) begin(ctx context.Context) error {
	s := w.s
	select {
	case <-s.checked:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopping.Done():
		return store.ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return store.ErrClosed
	}
	s.writes.Add(1)
	return nil
}

// Write stores ws as one atomic batch stamped by this server (new versions
// of this server's origin, as store.Write); the pushers wake on the store's
// own commit and send it to every live peer. It returns the changed nodes,
// without data, in request order; nil if nothing changed.
func (w *Writer) Write(ctx context.Context, ws []store.Write) ([]store.Node, error) {
	s := w.s
	if err := w.begin(ctx); err != nil {
		return nil, err
	}
	defer s.writes.Done()
	start := time.Now()
	nodes, err := s.store.Write(ctx, ws)
	s.metrics.committed("write", start, err)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, nil
	}
	s.metrics.writes.Add(float64(len(nodes)))
	var size int
	for _, x := range ws {
		size += len(x.Data)
	}
	s.log.Info("stored", "nodes", len(nodes), "bytes", size, "first", nodes[0].Path)
	return nodes, nil
}

// Apply stores nodes that keep their own versions, origins and seqs (a
// cluster replicated from, a backup restored with --merge), as store.Apply
// does: each replaces the node at its path only if it is newer, and nodes
// of this server's own origin are ignored. Peers get the applied nodes by
// digest sync, as any node of another origin. It returns how many nodes
// changed the store.
func (w *Writer) Apply(ctx context.Context, nodes []store.Node) (int, error) {
	return w.ApplyAdvance(ctx, nodes, nil)
}

// ApplyAdvance is Apply with vector advances (store.Apply's adv): after
// the nodes, each advance raises this server's vector entry of its origin
// to To when it holds at least From. A replication job applies a page of
// another cluster's nodes, whose seqs are not contiguous (the page holds
// only its prefix), and then raises the vector to the source's bookmark,
// so that digest sync among this cluster's servers does not send the
// same nodes again every round.
func (w *Writer) ApplyAdvance(ctx context.Context, nodes []store.Node, adv []store.Advance) (int, error) {
	s := w.s
	if err := w.begin(ctx); err != nil {
		return 0, err
	}
	defer s.writes.Done()
	start := time.Now()
	n, err := s.store.Apply(ctx, nodes, adv)
	s.metrics.committed("apply", start, err)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.Info("applied", "nodes", len(nodes), "changed", n, "first", nodes[0].Path)
	}
	return n, nil
}
