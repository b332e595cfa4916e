package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	repldspb "replds/proto"
)

// membership wraps memberlist: who is alive, and where their gRPC API is.
// Data never travels over it.
type membership struct {
	s    *Server
	log  *slog.Logger
	ml   *memberlist.Memberlist
	meta []byte // our advertised gRPC address

	mu sync.Mutex
	// peerNames maps a configured --peer address to the member name its
	// Hello returned, so the join loop skips peers already alive.
	peerNames map[string]string
}

// member is a snapshot of one cluster member.
type member struct {
	name     string
	grpcAddr string
	state    string
	self     bool
}

func newMembership(s *Server) (*membership, error) {
	addr, err := s.cfg.gossipAddr()
	if err != nil {
		return nil, fmt.Errorf("server: gossip address: %w", err)
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server: gossip address %q: %w", addr, err)
	}
	ip, err := resolveIP(host)
	if err != nil {
		return nil, fmt.Errorf("server: gossip address %q: %w", addr, err)
	}
	m := &membership{
		s:         s,
		log:       s.log.With("component", "membership"),
		peerNames: map[string]string{},
	}
	grpcAddr := s.Addr()
	if h, p, err := net.SplitHostPort(grpcAddr); err == nil && net.ParseIP(h).IsUnspecified() {
		// Advertise the gossip IP when the gRPC listener is on all addresses.
		grpcAddr = net.JoinHostPort(ip.String(), p)
	}
	m.meta = []byte(grpcAddr)

	conf := memberlist.DefaultLANConfig()
	if s.cfg.GossipProfile == "local" {
		conf = memberlist.DefaultLocalConfig()
	}
	conf.Name = s.cfg.Name
	conf.BindAddr = ip.String()
	conf.BindPort = port
	conf.AdvertisePort = port
	if !ip.IsUnspecified() {
		conf.AdvertiseAddr = ip.String()
	}
	if s.cfg.GossipKeyFile != "" {
		key, err := readGossipKey(s.cfg.GossipKeyFile)
		if err != nil {
			return nil, err
		}
		// Every packet is encrypted and authenticated; plaintext ones are
		// dropped, so no unauthenticated packet can add a member.
		conf.SecretKey = key
		conf.GossipVerifyIncoming = true
		conf.GossipVerifyOutgoing = true
	}
	conf.Delegate = m
	conf.Events = m
	conf.Logger = log.New(&slogWriter{log: m.log}, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("server: membership on %s: %w", addr, err)
	}
	m.ml = ml
	return m, nil
}

// resolveIP turns a listen host into one IP ("" and "0.0.0.0" stay
// unspecified).
func resolveIP(host string) (net.IP, error) {
	if host == "" {
		return net.IPv4zero, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip, nil
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %q", host)
	}
	return ips[0], nil
}

// addr returns the gossip address actually bound.
func (m *membership) addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// members returns every known member, this server included.
func (m *membership) members() []member {
	var out []member
	local := m.ml.LocalNode().Name
	// Members lists only alive and suspect nodes; dead ones are gone.
	for _, n := range m.ml.Members() {
		state := "alive"
		switch n.State {
		case memberlist.StateSuspect:
			state = "suspect"
		case memberlist.StateDead:
			state = "dead"
		case memberlist.StateLeft:
			state = "left"
		}
		out = append(out, member{name: n.Name, grpcAddr: string(n.Meta), state: state, self: n.Name == local})
	}
	return out
}

// alivePeers returns the other members believed alive.
func (m *membership) alivePeers() []member {
	var out []member
	for _, mb := range m.members() {
		if !mb.self && mb.state == "alive" && mb.grpcAddr != "" {
			out = append(out, mb)
		}
	}
	return out
}

// joinLoop joins the configured peers, and joins again any that is not an
// alive member, every RejoinInterval (a partition or a restart can leave a
// cluster split in two otherwise).
func (m *membership) joinLoop() {
	if len(m.s.cfg.Peers) == 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-m.s.done:
			return
		case <-t.C:
		}
		m.joinMissing()
		t.Reset(m.s.cfg.RejoinInterval)
	}
}

func (m *membership) joinMissing() {
	alive := map[string]bool{}
	for _, mb := range m.members() {
		if mb.state == "alive" {
			alive[mb.name] = true
		}
	}
	for _, peer := range m.s.cfg.Peers {
		m.mu.Lock()
		name, known := m.peerNames[peer]
		m.mu.Unlock()
		if known && alive[name] {
			continue
		}
		if err := m.join(peer); err != nil {
			m.log.Debug("join failed", "peer", peer, "err", err)
			continue
		}
	}
}

// join asks peer (a gRPC address) for its gossip address and joins it.
func (m *membership) join(peer string) error {
	ctx, cancel := context.WithTimeout(m.s.ctx, 3*time.Second)
	defer cancel()
	conn, err := m.s.peers.conn(peer)
	if err != nil {
		return err
	}
	resp, err := repldspb.NewInternalClient(conn).Hello(ctx, &repldspb.HelloRequest{})
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if resp.Name == m.s.cfg.Name {
		return nil // ourselves, listed among the peers
	}
	gossip := resp.GossipAddr
	if h, p, err := net.SplitHostPort(gossip); err == nil && (h == "" || net.ParseIP(h).IsUnspecified()) {
		ph, _, _ := net.SplitHostPort(peer)
		gossip = net.JoinHostPort(ph, p)
	}
	if h, p, err := net.SplitHostPort(gossip); err == nil && net.ParseIP(h) == nil {
		ip, err := resolveIP(h)
		if err != nil {
			return err
		}
		gossip = net.JoinHostPort(ip.String(), p)
	}
	if _, err := m.ml.Join([]string{gossip}); err != nil {
		return fmt.Errorf("join %s: %w", gossip, err)
	}
	m.mu.Lock()
	m.peerNames[peer] = resp.Name
	m.mu.Unlock()
	m.log.Info("joined", "peer", peer, "member", resp.Name)
	return nil
}

// leave announces our departure and stops membership.
func (m *membership) leave() {
	if err := m.ml.Leave(time.Second); err != nil {
		m.log.Debug("leave", "err", err)
	}
	if err := m.ml.Shutdown(); err != nil {
		m.log.Debug("membership shutdown", "err", err)
	}
}

// NodeMeta implements memberlist.Delegate: our gRPC address.
func (m *membership) NodeMeta(limit int) []byte {
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}

// NotifyMsg implements memberlist.Delegate; replds sends no user messages.
func (m *membership) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate: no state rides on membership.
func (m *membership) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (m *membership) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyJoin(n *memberlist.Node) {
	if n.Name != m.s.cfg.Name {
		m.log.Info("member joined", "member", n.Name, "addr", string(n.Meta))
	}
	m.s.peers.changed()
}

// NotifyLeave implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyLeave(n *memberlist.Node) {
	m.log.Info("member left", "member", n.Name)
	m.s.peers.changed()
}

// NotifyUpdate implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyUpdate(n *memberlist.Node) { m.s.peers.changed() }

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: msg") into
// slog records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
		"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
	} {
		if strings.HasPrefix(line, prefix) {
			level = l
			line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	// memberlist's own errors (a peer unreachable) are routine in a
	// cluster; keep them below warnings.
	if level == slog.LevelError {
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, "memberlist", "msg", line)
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)
var _ memberlist.Delegate = (*membership)(nil)
var _ memberlist.EventDelegate = (*membership)(nil)
