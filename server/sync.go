package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc"

	repldspb "replds/proto"
	"replds/store"
)

// syncLoop runs a digest sync round with a random alive peer every
// SyncInterval (with jitter, so servers do not beat in step).
func (s *Server) syncLoop() {
	log := s.log.With("component", "sync")
	failures := 0
	for {
		d := s.cfg.SyncInterval/2 + rand.N(s.cfg.SyncInterval)
		select {
		case <-s.done:
			return
		case <-time.After(d):
		}
		m, conn, ok := s.peers.randomPeer()
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
		applied, err := s.syncWith(ctx, conn)
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			failures++
			if failures == 3 {
				log.Warn("sync failing", "peer", m.name, "err", err)
			} else {
				log.Debug("sync failed", "peer", m.name, "err", err)
			}
			continue
		}
		failures = 0
		if applied > 0 {
			log.Info("synced", "peer", m.name, "nodes", applied)
		}
	}
}

// syncWith runs one digest sync round against a peer: it sends our vector
// and hash root, applies what the peer sends back, and starts a hash-tree
// repair when the peer says the vectors match but the roots do not.
func (s *Server) syncWith(ctx context.Context, conn *grpc.ClientConn) (int, error) {
	client := repldspb.NewInternalClient(conn)
	root := s.store.Root()
	stream, err := client.Sync(ctx, &repldspb.SyncRequest{
		Vector: vectorToProto(s.store.Vector()),
		Root:   root[:],
	})
	if err != nil {
		return 0, err
	}
	applied := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return applied, nil
		}
		if err != nil {
			return applied, err
		}
		if msg.Repair {
			n, err := s.repair(ctx, client)
			applied += n
			if err != nil {
				return applied, fmt.Errorf("repair: %w", err)
			}
			continue
		}
		nodes, err := nodesFromProto(msg.Origin, msg.Nodes)
		if err != nil {
			return applied, err
		}
		var adv []store.Advance
		if msg.Done {
			adv = []store.Advance{{Origin: msg.Origin, From: msg.From, To: msg.Upto}}
		}
		if len(nodes) == 0 && len(adv) == 0 {
			continue
		}
		n, err := s.store.Apply(ctx, nodes, adv)
		applied += n
		if err != nil {
			return applied, err
		}
	}
}

// repair descends the peer's hash tree where it differs from ours and
// fetches the differing leaf buckets: O(k log N) for k differing nodes.
func (s *Server) repair(ctx context.Context, client repldspb.InternalClient) (int, error) {
	log := s.log.With("component", "repair")
	log.Info("repair started")
	diff := []uint32{0}
	for level := 0; level < store.TreeDepth && len(diff) > 0; level++ {
		resp, err := client.Tree(ctx, &repldspb.TreeRequest{Level: uint32(level), Index: diff})
		if err != nil {
			return 0, err
		}
		if len(resp.Hashes) != len(diff)*store.TreeFanout {
			return 0, fmt.Errorf("tree level %d: %d hashes for %d nodes", level, len(resp.Hashes), len(diff))
		}
		var next []uint32
		for i, idx := range diff {
			local := s.store.TreeChildren(level, int(idx))
			for c := range store.TreeFanout {
				if !bytes.Equal(local[c][:], resp.Hashes[i*store.TreeFanout+c]) {
					next = append(next, idx*store.TreeFanout+uint32(c))
				}
			}
		}
		diff = next
	}
	if len(diff) == 0 {
		log.Info("repair finished", "buckets", 0, "nodes", 0)
		return 0, nil
	}
	stream, err := client.Buckets(ctx, &repldspb.BucketRequest{Buckets: diff})
	if err != nil {
		return 0, err
	}
	applied := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return applied, err
		}
		nodes, err := nodesFromProto(0, msg.Nodes)
		if err != nil {
			return applied, err
		}
		n, err := s.store.Apply(ctx, nodes, nil)
		applied += n
		if err != nil {
			return applied, err
		}
	}
	log.Info("repair finished", "buckets", len(diff), "nodes", applied)
	return applied, nil
}

func sortedOrigins(v store.Vector) []uint64 {
	out := make([]uint64, 0, len(v))
	for o := range v {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

func vectorsEqual(a, b store.Vector) bool {
	for o, s := range a {
		if b[o] != s {
			return false
		}
	}
	for o, s := range b {
		if a[o] != s {
			return false
		}
	}
	return true
}
