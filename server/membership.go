package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// gossipAddr is the address memberlist bound, read once at start (the
	// local Node changes under memberlist's lock).
	gossipAddr string

	mu sync.Mutex
	// peerNames maps a configured --peer address to the member name its
	// Hello returned, so the join loop skips peers already alive.
	peerNames map[string]string
	// gone holds the members that failed (state "dead") or left, by name,
	// until they join again or goneTTL passes: memberlist forgets them
	// soon, but status and metrics must still name a server that is down.
	gone map[string]goneMember
	// gate stops memberlist's callbacks into us (events, log lines) once
	// membership is shut down.
	gate *gate
	// live maps the members memberlist lists (alive or suspect), this
	// server included, to their gRPC address. It is kept from memberlist's
	// events, which come under memberlist's lock: the Nodes its Members
	// returns are shared with its state and change without a lock we can
	// take.
	live map[string]string
	// leavingAt holds, by member name, when a member announced that it
	// is leaving on purpose (see notice), so that its departure is told
	// from a failure: memberlist's events do not say which it was.
	leavingAt map[string]time.Time

	// broadcasts holds our outgoing notices; leaving gates GetBroadcasts
	// until leave begins.
	broadcasts *memberlist.TransmitLimitedQueue
	leaving    atomic.Bool
}

// noticeLeaving starts a membership user message announcing that the
// member named by the rest of the message is leaving on purpose.
const noticeLeaving = 1

// notice is a membership broadcast of ours. sent is closed once it has been
// transmitted enough times (or dropped).
type notice struct {
	msg  []byte
	once sync.Once
	sent chan struct{}
}

func (n *notice) Invalidates(memberlist.Broadcast) bool { return false }
func (n *notice) Message() []byte                       { return n.msg }
func (n *notice) Finished()                             { n.once.Do(func() { close(n.sent) }) }

// gate lets callbacks run until close, and makes them do nothing after it:
// memberlist's suspicion timers can fire after Shutdown, and nothing may
// log once the server is closed (a test's logger panics then).
type gate struct {
	mu     sync.RWMutex
	closed bool
}

// enter reports whether a callback may run; if so, it must call exit.
func (g *gate) enter() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *gate) exit() { g.mu.RUnlock() }

// close waits for running callbacks and refuses later ones.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// goneTTL is how long a failed or departed member is still reported.
const goneTTL = 24 * time.Hour

// goneMember is a member that failed or left, and when.
type goneMember struct {
	member
	at time.Time
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
		gone:      map[string]goneMember{},
		leavingAt: map[string]time.Time{},
		live:      map[string]string{},
		gate:      &gate{},
	}
	grpcAddr := s.Addr()
	if h, p, err := net.SplitHostPort(grpcAddr); err == nil && net.ParseIP(h).IsUnspecified() {
		// Advertise the gossip IP when the gRPC listener is on all addresses.
		grpcAddr = net.JoinHostPort(ip.String(), p)
	}
	if s.cfg.AdvertiseAddr != "" {
		grpcAddr = s.cfg.AdvertiseAddr
	}
	m.meta = []byte(grpcAddr)
	m.broadcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return m.ml.NumMembers() },
		RetransmitMult: 3,
	}

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
	conf.Logger = log.New(&slogWriter{log: m.log, gate: m.gate}, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("server: membership on %s: %w", addr, err)
	}
	m.ml = ml
	n := ml.LocalNode()
	m.gossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
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
func (m *membership) addr() string { return m.gossipAddr }

// members returns every known member, this server included.
func (m *membership) members() []member {
	// Alive and suspect members are both "alive" here: memberlist does not
	// tell them apart (a Node's State field stays StateAlive). Failed and
	// departed members are in departed.
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]member, 0, len(m.live))
	for _, name := range slices.Sorted(maps.Keys(m.live)) {
		out = append(out, member{name: name, grpcAddr: m.live[name], state: "alive", self: name == m.s.cfg.Name})
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
	// Tell the others that this is a departure, not a failure, and give
	// the notice a moment to go out ahead of memberlist's own.
	if m.ml.NumMembers() > 1 {
		n := &notice{msg: append([]byte{noticeLeaving}, m.s.cfg.Name...), sent: make(chan struct{})}
		m.broadcasts.QueueBroadcast(n)
		m.leaving.Store(true)
		select {
		case <-n.sent:
		case <-time.After(time.Second):
		}
	}
	if err := m.ml.Leave(time.Second); err != nil {
		m.log.Debug("leave", "err", err)
	}
	if err := m.ml.Shutdown(); err != nil {
		m.log.Debug("membership shutdown", "err", err)
	}
	m.gate.close()
}

// NodeMeta implements memberlist.Delegate: our gRPC address.
func (m *membership) NodeMeta(limit int) []byte {
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}

// NotifyMsg implements memberlist.Delegate: a peer's notice that it is
// leaving. It must not block, and must copy b.
func (m *membership) NotifyMsg(b []byte) {
	if len(b) < 2 || b[0] != noticeLeaving {
		return
	}
	if !m.gate.enter() {
		return
	}
	defer m.gate.exit()
	name := string(b[1:])
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leavingAt[name] = time.Now()
	// The notice may come after the departure itself.
	if g, ok := m.gone[name]; ok && g.state == "dead" {
		g.state = "left"
		m.gone[name] = g
	}
}

// GetBroadcasts implements memberlist.Delegate: our notices, once leave
// has begun.
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte {
	if !m.leaving.Load() {
		return nil
	}
	return m.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: no state rides on membership.
func (m *membership) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (m *membership) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyJoin(n *memberlist.Node) {
	if !m.gate.enter() {
		return
	}
	defer m.gate.exit()
	if n.Name != m.s.cfg.Name {
		m.log.Info("member joined", "member", n.Name, "addr", string(n.Meta))
	}
	m.mu.Lock()
	m.live[n.Name] = grpcAddrOf(n)
	delete(m.gone, n.Name)
	delete(m.leavingAt, n.Name)
	m.mu.Unlock()
	m.s.peers.changed()
}

// NotifyLeave implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyLeave(n *memberlist.Node) {
	if !m.gate.enter() {
		return
	}
	defer m.gate.exit()
	// n.State is not reliable (see members): a member that leaves on
	// purpose says so first (NotifyMsg).
	m.mu.Lock()
	state := "dead"
	if at, ok := m.leavingAt[n.Name]; (ok && time.Since(at) < time.Minute) || n.Name == m.s.cfg.Name {
		state = "left"
	}
	delete(m.leavingAt, n.Name)
	delete(m.live, n.Name)
	m.gone[n.Name] = goneMember{member{name: n.Name, grpcAddr: grpcAddrOf(n), state: state}, time.Now()}
	m.mu.Unlock()
	switch {
	case n.Name == m.s.cfg.Name:
		// Our own departure: Close logs it.
	case state == "left":
		m.log.Info("member left", "member", n.Name)
	default:
		m.log.Warn("member failed", "member", n.Name, "addr", string(n.Meta))
	}
	m.s.peers.changed()
}

// departed returns the members that failed ("dead") or left and have not
// joined again, for status and metrics; members does not list them.
func (m *membership) departed() []member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []member
	for name, g := range m.gone {
		if time.Since(g.at) > goneTTL {
			delete(m.gone, name)
			continue
		}
		out = append(out, g.member)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.name, b.name) })
	return out
}

// NotifyUpdate implements memberlist.EventDelegate. It must not block.
func (m *membership) NotifyUpdate(n *memberlist.Node) {
	if !m.gate.enter() {
		return
	}
	defer m.gate.exit()
	m.mu.Lock()
	m.live[n.Name] = grpcAddrOf(n)
	m.mu.Unlock()
	m.s.peers.changed()
}

// grpcAddrOf returns the gRPC address a member advertises. A member that
// listens on all addresses (--addr=:12100) advertises no host: it is then
// reached at the address its membership traffic comes from.
func grpcAddrOf(n *memberlist.Node) string {
	addr := string(n.Meta)
	h, p, err := net.SplitHostPort(addr)
	if err != nil || (h != "" && !net.ParseIP(h).IsUnspecified()) || n.Addr == nil {
		return addr
	}
	return net.JoinHostPort(n.Addr.String(), p)
}

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: msg") into
// slog records.
type slogWriter struct {
	log  *slog.Logger
	gate *gate
}

func (w *slogWriter) Write(p []byte) (int, error) {
	if !w.gate.enter() {
		return len(p), nil
	}
	defer w.gate.exit()
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
