package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Membership.
type Config struct {
	// Name is the local member's name, unique in the cluster. Required.
	Name string
	// BindAddr is the gossip listen host or IP (empty: all addresses),
	// BindPort its port (0 picks one).
	BindAddr string
	BindPort int
	// Profile selects memberlist's timings: "lan" (the default) or "local"
	// (loopback-fast failure detection, for tests and local clusters).
	Profile string
	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates
	// every gossip packet; packets without it are dropped, so they cannot
	// add a member.
	SecretKey []byte
	// Meta is what the local member advertises. A GRPCAddr whose host is
	// unspecified (0.0.0.0, ::) is advertised with the gossip IP instead
	// when that is known.
	Meta Meta
	// Peers are gRPC addresses of servers to join through (see Hello).
	Peers []string
	// RejoinInterval is how often Run joins again the peers that are not
	// alive members.
	RejoinInterval time.Duration
	// Hello asks a peer, by its gRPC address, for its member name and gossip
	// address. Run calls it, one call at a time; it must honour ctx.
	// Required when Peers is not empty.
	Hello func(ctx context.Context, peer string) (HelloInfo, error)
	// ReapAfter is how long a member that failed or left is still listed
	// (as dead or left) by Members, unless it joins again.
	ReapAfter time.Duration
	// Logger receives membership logs; nil = slog.Default().
	Logger *slog.Logger
}

// HelloInfo is a peer's answer to Hello.
type HelloInfo struct {
	// Name is the peer's member name.
	Name string
	// GossipAddr is its gossip address; an unspecified or empty host means
	// the host the peer was reached at.
	GossipAddr string
}

// DefaultConfig returns a configuration with memberlist's LAN timings,
// listening for gossip on bindAddr:bindPort, for the member named name.
func DefaultConfig(name, bindAddr string, bindPort int) Config {
	return Config{
		Name:           name,
		BindAddr:       bindAddr,
		BindPort:       bindPort,
		Profile:        "lan",
		RejoinInterval: 5 * time.Second,
		ReapAfter:      time.Hour,
	}
}

// Validate reports the first configuration problem.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster: member name is required")
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("cluster: gossip port %d out of range", c.BindPort)
	}
	switch c.Profile {
	case "", "lan", "local":
	default:
		return fmt.Errorf("cluster: gossip profile %q (want lan or local)", c.Profile)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("cluster: gossip key of %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if c.ReapAfter <= 0 {
		return fmt.Errorf("cluster: reap-after %v: must be positive", c.ReapAfter)
	}
	if len(c.Peers) > 0 {
		if c.Hello == nil {
			return errors.New("cluster: peers given without a Hello function")
		}
		if c.RejoinInterval <= 0 {
			return errors.New("cluster: rejoin interval must be positive")
		}
	}
	return nil
}
