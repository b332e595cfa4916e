package server

import (
	"errors"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"

	"github.com/replds/replds/certs"
)

// Connections are bounded before they authenticate: gRPC closes one whose
// TLS handshake (and HTTP/2 preface) has not finished within
// Config.HandshakeTimeout, and handshakeListener closes at once a new
// connection past the bound on those still handshaking. Connections from
// addresses the server knows (members, and clients that authenticated
// before) may also use Config.HandshakeReserve more, so that a flood from
// elsewhere does not lock out peers and known clients.

// maxKnownAddrs bounds the addresses remembered as having authenticated.
const maxKnownAddrs = 16384

// handshakes counts the connections still handshaking. Safe for
// concurrent use.
type handshakes struct {
	max, reserve int

	// slots maps each accepted connection still handshaking to its
	// remote IP.
	slots sync.Map

	mu      sync.Mutex
	pending int // all connections handshaking
	known   map[string]struct{}
}

// admit takes a handshake slot for a connection from ip (known: from a
// member or an address that authenticated before), or reports false.
func (h *handshakes) admit(known bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	limit := h.max
	if known {
		limit += h.reserve
	}
	if h.pending >= limit {
		return false
	}
	h.pending++
	return true
}

func (h *handshakes) done() {
	h.mu.Lock()
	h.pending--
	h.mu.Unlock()
}

// authenticated remembers ip as one that completed a TLS handshake.
func (h *handshakes) authenticated(ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.known == nil {
		h.known = map[string]struct{}{}
	}
	if _, ok := h.known[ip]; ok {
		return
	}
	if len(h.known) >= maxKnownAddrs {
		for k := range h.known { // drop any one
			delete(h.known, k)
			break
		}
	}
	h.known[ip] = struct{}{}
}

func (h *handshakes) wasAuthenticated(ip string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.known[ip]
	return ok
}

// knownAddr reports whether ip is a member's or one that authenticated.
func (s *Server) knownAddr(ip string) bool {
	if s.handshakes.wasAuthenticated(ip) {
		return true
	}
	for _, m := range s.mem.Members() {
		if host, _, err := net.SplitHostPort(m.GRPCAddr); err == nil && host == ip {
			return true
		}
	}
	return false
}

// handshakeListener closes at once a connection that would pass the
// bound on pending handshakes, and registers the others' slots, which
// guardedCreds gives back when their handshake ends. Connections are
// handed to gRPC unwrapped (gRPC sets socket options on a *net.TCPConn).
type handshakeListener struct {
	net.Listener
	s *Server
}

// Accept implements net.Listener.
func (l *handshakeListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if !l.s.handshakes.admit(l.s.knownAddr(ip)) {
			l.s.metrics.refused("handshake_pending")
			c.Close()
			continue
		}
		l.s.handshakes.slots.Store(c, ip)
		return c, nil
	}
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// release gives back the handshake slot of raw, if it holds one, and
// returns its address.
func (h *handshakes) release(raw net.Conn) (ip string, ok bool) {
	v, ok := h.slots.LoadAndDelete(raw)
	if !ok {
		return "", false
	}
	h.done()
	return v.(string), true
}

// guardedCreds are the server's transport credentials, which give back
// the handshake slot when the handshake ends, remember addresses that
// authenticated, and log the refusals worth an operator's attention.
type guardedCreds struct {
	credentials.TransportCredentials
	s   *Server
	tls bool
}

// ServerHandshake implements credentials.TransportCredentials.
func (g *guardedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := g.TransportCredentials.ServerHandshake(raw)
	ip, held := g.s.handshakes.release(raw)
	switch {
	case err == nil:
		if held && g.tls {
			g.s.handshakes.authenticated(ip)
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.s.metrics.refused("handshake_timeout")
	case errors.Is(err, certs.ErrManyCommonNames):
		g.s.metrics.refused("bad_identity")
		g.s.log.Warn("client certificate refused", "remote", raw.RemoteAddr().String(), "err", err)
	}
	return conn, info, err
}

// Clone implements credentials.TransportCredentials.
func (g *guardedCreds) Clone() credentials.TransportCredentials {
	return &guardedCreds{TransportCredentials: g.TransportCredentials.Clone(), s: g.s, tls: g.tls}
}
