package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/certs"
	"github.com/replds/replds/nodepath"
)

// security holds the server's TLS material and ACLs. Both reload without
// a restart (Server.Reload, on SIGHUP; certificates also when their files
// change).
type security struct {
	tls  *certs.Reloader // nil in plain mode
	acls *acl.Holder
}

func newSecurity(cfg *Config) (*security, error) {
	if err := cfg.TLS.Validate(); err != nil {
		return nil, err
	}
	sec := &security{}
	if cfg.TLS.Enabled() {
		r, err := certs.NewReloader(cfg.TLS, cfg.Logger.With("component", "tls"))
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		sec.tls = r
	} else if cfg.ACLFile != "" {
		return nil, errors.New("server: --acls needs --tls-cert, --tls-key and --tls-ca: identities come from client certificates")
	}
	h, err := acl.NewHolder(cfg.ACLFile)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	sec.acls = h
	return sec, nil
}

// serverCreds returns the gRPC server credentials.
func (sec *security) serverCreds() credentials.TransportCredentials {
	if sec.tls == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(sec.tls.ServerConfig())
}

// dialOption returns the credentials a server uses to reach its peers. In
// TLS mode the handshake fails unless the peer's certificate names an
// identity with the peer permission: a server never sends data to a peer
// the ACLs do not make one.
func (sec *security) dialOption() grpc.DialOption {
	if sec.tls == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(&peerCreds{
		TransportCredentials: credentials.NewTLS(sec.peerTLSConfig()),
		sec:                  sec,
	})
}

// peerTLSConfig returns the TLS configuration for dialing a peer, built
// from the current certificates and CA.
func (sec *security) peerTLSConfig() *tls.Config {
	cfg := sec.tls.ClientConfig("")
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		id, ok := certs.Identity(cs)
		if !ok {
			return errors.New("server: peer presented no verified certificate")
		}
		if !sec.acls.Get().Check(id, acl.Peer, "") {
			return fmt.Errorf("server: %q is not a peer in the ACLs", id)
		}
		return nil
	}
	return cfg
}

// peerCreds are the TLS credentials for dialing peers, rebuilt for every
// handshake so that connections to peers follow a CA rotation as they
// follow a certificate rotation.
type peerCreds struct {
	credentials.TransportCredentials
	sec *security
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *peerCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.sec.peerTLSConfig()).ClientHandshake(ctx, authority, conn)
}

// Clone implements credentials.TransportCredentials.
func (c *peerCreds) Clone() credentials.TransportCredentials {
	return &peerCreds{TransportCredentials: c.TransportCredentials.Clone(), sec: c.sec}
}

// identity returns the verified client certificate's Common Name of the
// caller of ctx ("" in plain mode).
func identity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	id, _ := certs.Identity(info.State)
	return id
}

// authorize returns ErrPermission unless the caller of ctx may do o on path
// (path is ignored for acl.Peer). Without ACLs everything is allowed.
func (s *Server) authorize(ctx context.Context, o acl.Op, path string) error {
	a := s.sec.acls.Get()
	if a == nil {
		return nil
	}
	id := identity(ctx)
	if a.Check(id, o, path) {
		return nil
	}
	s.log.Info("access denied", "identity", id, "op", o.String(), "path", path)
	s.metrics.aclDenial(o.String())
	if o == acl.Peer {
		return fmt.Errorf("%w: %q is not a peer", ErrPermission, id)
	}
	return fmt.Errorf("%w: %q may not %s %s", ErrPermission, id, o, path)
}

// readable returns the roots of the subtrees under prefix that the caller
// of ctx may read (prefix itself when it may read all of it), and a
// predicate for single paths (nil: everything). It returns ErrPermission
// when nothing under prefix is readable, without saying whether anything
// exists there.
//
// The reserved namespace is left out unless prefix names it (is
// nodepath.Reserved or under it): a Watch or List of "/" does not copy the
// cluster's own nodes onto hosts.
func (s *Server) readable(ctx context.Context, prefix string) ([]string, func(path string) bool, error) {
	// The only prefix above the reserved namespace that does not name it:
	// nodepath.Reserved sits right under the root.
	hide := prefix == "/"
	a := s.sec.acls.Get()
	if a == nil {
		if hide {
			return []string{prefix}, notReserved, nil
		}
		return []string{prefix}, nil, nil
	}
	id := identity(ctx)
	roots := a.Readable(id, prefix)
	if hide {
		roots = slices.DeleteFunc(roots, nodepath.IsReserved)
	}
	if len(roots) == 0 {
		s.log.Info("access denied", "identity", id, "op", acl.Read.String(), "path", prefix)
		s.metrics.aclDenial(acl.Read.String())
		return nil, nil, fmt.Errorf("%w: %q may not read %s", ErrPermission, id, prefix)
	}
	return roots, func(path string) bool {
		return a.Check(id, acl.Read, path) && (!hide || notReserved(path))
	}, nil
}

func notReserved(path string) bool { return !nodepath.IsReserved(path) }

// Reload re-reads the ACL file and the TLS files. A bad ACL file keeps the
// old rules; the error says why.
func (s *Server) Reload() error {
	var errs []error
	if s.sec.acls.Path() != "" {
		old := s.sec.acls.Get()
		if err := s.sec.acls.Reload(); err != nil {
			errs = append(errs, err)
		} else {
			s.log.Info("acls reloaded", "file", s.sec.acls.Path(), "rules", s.sec.acls.Get().Len())
			if lost := lostPeers(old, s.sec.acls.Get()); len(lost) > 0 {
				s.log.Info("peer permission revoked; reconnecting to peers", "identities", lost)
				s.peers.redial()
			}
		}
	}
	if s.sec.tls != nil {
		if err := s.sec.tls.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lostPeers returns the identities that are peers under old but not under
// cur.
func lostPeers(old, cur *acl.ACL) []string {
	var out []string
	for _, r := range old.Rules() {
		if r.Op == acl.Peer && !cur.Check(r.Identity, acl.Peer, "") && !slices.Contains(out, r.Identity) {
			out = append(out, r.Identity)
		}
	}
	return out
}

// readGossipKey reads a memberlist key, base64 encoded. Its length (16, 24
// or 32 bytes) is checked by cluster.Config.Validate.
func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: gossip key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("server: gossip key %s: not base64: %w", path, err)
	}
	return key, nil
}
