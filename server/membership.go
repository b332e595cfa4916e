package server

import (
	"context"
	"fmt"
	"time"

	"github.com/replds/replds/cluster"
	repldspb "github.com/replds/replds/proto"
)

// newMembership creates the server's membership (package cluster): gossip
// on the configured address, advertising the gRPC address and readiness,
// joining the configured peers through their Hello RPC.
func newMembership(s *Server) (*cluster.Membership, error) {
	addr, err := s.cfg.gossipAddr()
	if err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server: gossip address %q: %w", addr, err)
	}
	cfg := cluster.DefaultConfig(s.cfg.Name, host, port)
	cfg.Profile = s.cfg.GossipProfile
	if s.cfg.GossipKeyFile != "" {
		if cfg.SecretKey, err = readGossipKey(s.cfg.GossipKeyFile); err != nil {
			return nil, err
		}
	}
	cfg.Meta.GRPCAddr = s.Addr()
	if s.cfg.AdvertiseAddr != "" {
		cfg.Meta.GRPCAddr = s.cfg.AdvertiseAddr
	}
	// Alone by configuration is ready at once (see readiness); otherwise
	// the first completed sync round advertises it.
	cfg.Meta.Ready = len(s.cfg.Peers) == 0
	cfg.Peers = s.cfg.Peers
	cfg.RejoinInterval = s.cfg.RejoinInterval
	cfg.ReapAfter = s.cfg.ReapDeadAfter
	cfg.Hello = s.hello
	cfg.Logger = s.log.With("component", "membership")
	m, err := cluster.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return m, nil
}

// hello asks the server at peer (a gRPC address) for its member name and
// gossip address.
func (s *Server) hello(ctx context.Context, peer string) (cluster.HelloInfo, error) {
	c, err := s.peers.tr.peer(peer)
	if err != nil {
		return cluster.HelloInfo{}, err
	}
	resp, err := c.hello(ctx, &repldspb.HelloRequest{Origin: s.store.Origin()})
	if err != nil {
		return cluster.HelloInfo{}, err
	}
	return cluster.HelloInfo{Name: resp.Name, GossipAddr: resp.GossipAddr}, nil
}

// alivePeers returns the other live members that advertise a gRPC address.
func alivePeers(mem *cluster.Membership) []cluster.Member {
	var out []cluster.Member
	for _, mb := range mem.Members() {
		if !mb.Self && mb.State.Live() && mb.GRPCAddr != "" {
			out = append(out, mb)
		}
	}
	return out
}

// setCaughtUp records a completed sync round: the server has had
// everything some peer had, and is ready (see readiness). The first call
// tells the cluster.
func (s *Server) setCaughtUp() {
	if s.caughtUp.CompareAndSwap(false, true) {
		s.advertiseReadiness()
	}
}

// advertiseReadiness tells the cluster when this server's readiness (see
// readiness) changed. It blocks up to a second for the update to go out.
func (s *Server) advertiseReadiness() {
	if s.ctx.Err() != nil {
		return // leaving: the departure says it all
	}
	ready, _ := s.readiness()
	if err := s.mem.SetReady(ready, time.Second); err != nil {
		s.log.Debug("readiness not advertised yet", "err", err)
	}
}
