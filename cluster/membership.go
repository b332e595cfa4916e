package cluster

import (
	"bytes"
	"context"
	"errors"
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
)

// Membership is the local member of a cluster. Create it with New, run its
// join loop with Run, leave with Close. Its methods are safe for concurrent
// use.
type Membership struct {
	cfg Config
	log *slog.Logger
	ml  *memberlist.Memberlist
	// gossipAddr is the address memberlist bound, read once at start (the
	// local Node changes under memberlist's lock).
	gossipAddr string
	// gate stops memberlist's callbacks into us (events, log lines) once
	// the membership is closed.
	gate *gate
	// logw is memberlist's log output.
	logw *slogWriter

	mu sync.Mutex
	// meta is what we advertise.
	meta Meta
	// peerNames maps a configured peer address to the member name its
	// Hello returned, so the join loop skips peers already alive.
	peerNames map[string]string
	// live holds the members memberlist lists (alive or suspect), this one
	// included. It is kept from memberlist's events, which come under
	// memberlist's lock: the Nodes its Members returns are shared with its
	// state and change without a lock we can take.
	live map[string]Member
	// gone holds the members that failed or left, by name, until they
	// join again, Config.ReapAfter passes (reap) or they are forgotten:
	// memberlist forgets them soon, but status and metrics must still name
	// a server that is down.
	gone map[string]goneMember
	// leavingAt holds, by member name, when a member announced that it is
	// leaving on purpose (see notice), so that its departure is told from
	// a failure: memberlist's events do not say which it was.
	leavingAt map[string]time.Time
	// changed is closed and replaced at every change of the member list.
	changed chan struct{}
	// joinErrs holds, by configured peer, the last failure to join it,
	// until a join succeeds (LastJoinError).
	joinErrs map[string]JoinError

	// broadcasts holds our outgoing notices; leaving gates GetBroadcasts
	// until leave begins.
	broadcasts *memberlist.TransmitLimitedQueue
	leaving    atomic.Bool
	closeOnce  sync.Once
}

// goneMember is a member that failed or left, and when.
type goneMember struct {
	Member
	at time.Time
}

// New binds the gossip address and starts memberlist, alone: Run joins the
// peers. The caller must Close the Membership.
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ip, err := resolveIP(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address %q: %w", cfg.BindAddr, err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	m := &Membership{
		cfg:       cfg,
		log:       lg,
		gate:      &gate{},
		meta:      cfg.Meta,
		peerNames: map[string]string{},
		joinErrs:  map[string]JoinError{},
		live:      map[string]Member{},
		gone:      map[string]goneMember{},
		leavingAt: map[string]time.Time{},
		changed:   make(chan struct{}),
	}
	if h, p, err := net.SplitHostPort(m.meta.GRPCAddr); err == nil && net.ParseIP(h).IsUnspecified() {
		// Advertise the gossip IP when the gRPC listener is on all addresses.
		m.meta.GRPCAddr = net.JoinHostPort(ip.String(), p)
	}
	m.broadcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return m.ml.NumMembers() },
		RetransmitMult: 3,
	}

	conf := memberlist.DefaultLANConfig()
	if cfg.Profile == "local" {
		conf = memberlist.DefaultLocalConfig()
	}
	conf.Name = cfg.Name
	conf.BindAddr = ip.String()
	conf.BindPort = cfg.BindPort
	conf.AdvertisePort = cfg.BindPort
	if !ip.IsUnspecified() {
		conf.AdvertiseAddr = ip.String()
	}
	if len(cfg.SecretKey) > 0 {
		// Every packet is encrypted and authenticated; plaintext ones are
		// dropped, so no unauthenticated packet can add a member.
		conf.SecretKey = cfg.SecretKey
		conf.GossipVerifyIncoming = true
		conf.GossipVerifyOutgoing = true
	}
	conf.Delegate = (*delegate)(m)
	conf.Events = (*delegate)(m)
	m.logw = &slogWriter{log: m.log, gate: m.gate, now: time.Now}
	conf.Logger = log.New(m.logw, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	m.ml = ml
	n := ml.LocalNode()
	m.gossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	return m, nil
}

// resolveIP turns a listen host into one IP, preferring IPv4 ("" and
// "0.0.0.0" stay unspecified).
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

// Addr returns the gossip address actually bound.
func (m *Membership) Addr() string { return m.gossipAddr }

// Name returns the local member's name.
func (m *Membership) Name() string { return m.cfg.Name }

// Members returns every known member: the live ones (this one included),
// then those that failed or left within the last Config.ReapAfter and
// have not joined again nor been forgotten, each group sorted by name. The
// slice is the caller's. Members stops listing a member once its
// ReapAfter has run out; Changed fires when Run reaps it.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.live)+len(m.gone))
	for _, mb := range m.live {
		out = append(out, mb)
	}
	for _, g := range m.gone {
		if time.Since(g.at) > m.cfg.ReapAfter {
			continue // reap removes it
		}
		out = append(out, g.Member)
	}
	slices.SortFunc(out, compareMembers)
	return out
}

// reap forgets the members that failed or left more than ReapAfter ago,
// and fires Changed if there were any.
func (m *Membership) reap() {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.gone)
	maps.DeleteFunc(m.gone, func(_ string, g goneMember) bool { return time.Since(g.at) > m.cfg.ReapAfter })
	if len(m.gone) < n {
		m.changedLocked()
	}
}

// Errors of Forget.
var (
	ErrMemberLive    = errors.New("cluster: member is alive")
	ErrMemberUnknown = errors.New("cluster: no such member")
)

// Forget stops listing a member that failed or left, before ReapAfter. A
// member that is alive cannot be forgotten (ErrMemberLive); should a
// forgotten member come back, it is listed again.
func (m *Membership) Forget(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live[name]; ok {
		return fmt.Errorf("%w: %s (stop it first)", ErrMemberLive, name)
	}
	if _, ok := m.gone[name]; !ok {
		return fmt.Errorf("%w: %s", ErrMemberUnknown, name)
	}
	delete(m.gone, name)
	m.changedLocked()
	return nil
}

// Changed returns a channel that is closed at the next change of what
// Members returns (a member joined, failed, left, changed its Meta, was
// reaped or forgotten).
// Take the channel before reading Members, then wait on it: no change is
// missed. It never blocks.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// changedLocked wakes the readers waiting on Changed; the caller holds mu.
func (m *Membership) changedLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// SetReady changes the readiness the local member advertises and tells the
// cluster, waiting up to timeout for the update to go out. It returns at
// once when readiness does not change.
func (m *Membership) SetReady(ready bool, timeout time.Duration) error {
	m.mu.Lock()
	if m.meta.Ready == ready {
		m.mu.Unlock()
		return nil
	}
	m.meta.Ready = ready
	m.mu.Unlock()
	if err := m.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("cluster: advertise readiness: %w", err)
	}
	return nil
}

// Run joins the configured peers, and joins again any that is not an alive
// member every RejoinInterval, until ctx is done.
//
// It also logs, every RejoinInterval, the summaries of memberlist warnings
// suppressed by rate limiting (slogWriter).
func (m *Membership) Run(ctx context.Context) {
	every := m.cfg.RejoinInterval
	if every <= 0 { // no peers: only the summaries
		every = warnWindow
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if len(m.cfg.Peers) > 0 {
			m.joinMissing(ctx)
		}
		m.reap()
		if m.gate.enter() {
			m.logw.flush()
			m.gate.exit()
		}
		t.Reset(every)
	}
}

func (m *Membership) joinMissing(ctx context.Context) {
	alive := map[string]bool{}
	for _, mb := range m.Members() {
		if mb.State.Live() {
			alive[mb.Name] = true
		}
	}
	for _, peer := range m.cfg.Peers {
		m.mu.Lock()
		name, known := m.peerNames[peer]
		m.mu.Unlock()
		if known && alive[name] {
			continue
		}
		err := m.join(ctx, peer)
		m.joined(peer, err)
	}
}

// JoinError is a failure to join a configured peer.
type JoinError struct {
	Peer string
	Err  string
	// At is when it last happened, Since when it began (the peer has
	// failed every attempt in between).
	At, Since time.Time
	// logged is when it was last logged at warn.
	logged time.Time
}

// joinWarnEvery is how often a peer that keeps failing to join with the
// same error is logged at warn again.
const joinWarnEvery = time.Minute

// joined records the outcome of joining peer: a failure is logged at warn
// when it is new (a first failure, or another error than the last), and
// again every joinWarnEvery while it lasts; a success clears it.
func (m *Membership) joined(peer string, err error) {
	now := time.Now()
	m.mu.Lock()
	prev, failing := m.joinErrs[peer]
	if err == nil {
		delete(m.joinErrs, peer)
		m.mu.Unlock()
		return
	}
	cur := JoinError{Peer: peer, Err: err.Error(), At: now, Since: now}
	warn := !failing || prev.Err != cur.Err
	if !warn {
		cur.Since = prev.Since
		warn = now.Sub(prev.logged) >= joinWarnEvery
	}
	cur.logged = prev.logged
	if warn {
		cur.logged = now
	}
	m.joinErrs[peer] = cur
	m.mu.Unlock()
	if warn {
		m.logGated(slog.LevelWarn, "join failed", "peer", peer, "err", err, "failing_since", cur.Since.Format(time.RFC3339))
	} else {
		m.logGated(slog.LevelDebug, "join failed", "peer", peer, "err", err)
	}
}

// LastJoinError returns the most recent failure to join a configured peer
// that has not joined since, and false if there is none.
func (m *Membership) LastJoinError() (JoinError, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last JoinError
	for _, e := range m.joinErrs {
		if e.At.After(last.At) {
			last = e
		}
	}
	return last, !last.At.IsZero()
}

// join asks peer (a gRPC address) for its gossip address and joins it.
func (m *Membership) join(ctx context.Context, peer string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := m.cfg.Hello(ctx, peer)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if resp.Name == m.cfg.Name {
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
	m.logGated(slog.LevelInfo, "joined", "peer", peer, "member", resp.Name)
	return nil
}

// logGated logs unless the membership is closed: the join loop (Run) may
// outlive Close, and nothing is logged after Close returns.
func (m *Membership) logGated(level slog.Level, msg string, args ...any) {
	if !m.gate.enter() {
		return
	}
	defer m.gate.exit()
	m.log.Log(context.Background(), level, msg, args...)
}

// Close announces that the local member leaves on purpose, leaves the
// cluster and stops memberlist. It is idempotent; nothing is logged after
// it returns.
func (m *Membership) Close() {
	m.closeOnce.Do(m.leave)
}

func (m *Membership) leave() {
	// Tell the others that this is a departure, not a failure, and give
	// the notice a moment to go out ahead of memberlist's own.
	if m.ml.NumMembers() > 1 {
		n := &notice{msg: append([]byte{noticeLeaving}, m.cfg.Name...), sent: make(chan struct{})}
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

// delegate is the face a Membership shows memberlist: its callbacks,
// kept off the Membership's own method set.
type delegate Membership

// NodeMeta implements memberlist.Delegate: our Meta.
func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	b := d.meta.encode()
	d.mu.Unlock()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate: a peer's notice that it is
// leaving. It must not block, and must copy b.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 2 || b[0] != noticeLeaving {
		return
	}
	if !d.gate.enter() {
		return
	}
	defer d.gate.exit()
	name := string(b[1:])
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leavingAt[name] = time.Now()
	// The notice may come after the departure itself.
	if g, ok := d.gone[name]; ok && g.State == Dead {
		g.State = Left
		d.gone[name] = g
		(*Membership)(d).changedLocked()
	}
}

// GetBroadcasts implements memberlist.Delegate: our notices, once leave
// has begun.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if !d.leaving.Load() {
		return nil
	}
	return d.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: no state rides on membership.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements memberlist.EventDelegate. It must not block.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	if !d.gate.enter() {
		return
	}
	defer d.gate.exit()
	meta := decodeMeta(n)
	if n.Name != d.cfg.Name {
		d.log.Info("member joined", "member", n.Name, "addr", meta.GRPCAddr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.live[n.Name] = Member{Name: n.Name, State: Alive, Self: n.Name == d.cfg.Name, Meta: meta}
	delete(d.gone, n.Name)
	delete(d.leavingAt, n.Name)
	(*Membership)(d).changedLocked()
}

// NotifyLeave implements memberlist.EventDelegate. It must not block.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	if !d.gate.enter() {
		return
	}
	defer d.gate.exit()
	// n.State is not reliable (see State): a member that leaves on
	// purpose says so first (NotifyMsg).
	d.mu.Lock()
	state := Dead
	if at, ok := d.leavingAt[n.Name]; (ok && time.Since(at) < time.Minute) || n.Name == d.cfg.Name {
		state = Left
	}
	meta := decodeMeta(n)
	delete(d.leavingAt, n.Name)
	delete(d.live, n.Name)
	d.gone[n.Name] = goneMember{Member{Name: n.Name, State: state, Self: n.Name == d.cfg.Name, Meta: meta}, time.Now()}
	(*Membership)(d).changedLocked()
	d.mu.Unlock()
	switch {
	case n.Name == d.cfg.Name:
		// Our own departure: the owner logs it.
	case state == Left:
		d.log.Info("member left", "member", n.Name)
	default:
		d.log.Warn("member failed", "member", n.Name, "addr", meta.GRPCAddr)
	}
}

// NotifyUpdate implements memberlist.EventDelegate. It must not block.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	if !d.gate.enter() {
		return
	}
	defer d.gate.exit()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.live[n.Name] = Member{Name: n.Name, State: Alive, Self: n.Name == d.cfg.Name, Meta: decodeMeta(n)}
	(*Membership)(d).changedLocked()
}

// gate lets callbacks run until close, and makes them do nothing after it:
// memberlist's suspicion timers can fire after Shutdown, and nothing may
// log once the membership is closed (a test's logger panics then).
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

// Memberlist warns once per bad packet or connection: garbage sent to the
// gossip port would flood the log. Of each kind of warning (its text with
// numbers, addresses included, blanked), warnBurst are logged per
// warnWindow; the others are counted and summed up in one line, logged
// with the next warning after the window or by flush.
const (
	warnBurst  = 5
	warnWindow = 10 * time.Second
	// maxWarnKinds bounds the kinds tracked; past it they are all summed
	// up and forgotten.
	maxWarnKinds = 256
)

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: msg") into
// slog records, warnings rate-limited. Safe for concurrent use.
type slogWriter struct {
	log  *slog.Logger
	gate *gate
	now  func() time.Time

	mu    sync.Mutex
	kinds map[string]*warnKind
}

// warnKind counts the warnings of one kind in the current window.
type warnKind struct {
	start      time.Time
	n          int
	suppressed int
	sample     string
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
	if level >= slog.LevelWarn && !w.admit(line) {
		return len(p), nil
	}
	w.log.Log(context.Background(), level, "memberlist", "msg", line)
	return len(p), nil
}

// admit reports whether a warning may be logged, counting it otherwise;
// it logs the summaries of windows that ended.
func (w *slogWriter) admit(line string) bool {
	now := w.now()
	key := warnKindOf(line)
	w.mu.Lock()
	var ended []warnKind
	if w.kinds == nil || len(w.kinds) >= maxWarnKinds {
		for _, k := range w.kinds {
			ended = append(ended, *k)
		}
		w.kinds = map[string]*warnKind{}
	}
	k := w.kinds[key]
	if k != nil && now.Sub(k.start) >= warnWindow {
		ended = append(ended, *k)
		k = nil
	}
	if k == nil {
		k = &warnKind{start: now}
		w.kinds[key] = k
	}
	k.n++
	ok := k.n <= warnBurst
	if !ok {
		k.suppressed++
		k.sample = line
	}
	w.mu.Unlock()
	w.summarize(ended)
	return ok
}

// flush logs the summaries of the windows that have ended. Call it with
// the gate entered.
func (w *slogWriter) flush() {
	now := w.now()
	w.mu.Lock()
	var ended []warnKind
	for key, k := range w.kinds {
		if now.Sub(k.start) >= warnWindow {
			ended = append(ended, *k)
			delete(w.kinds, key)
		}
	}
	w.mu.Unlock()
	w.summarize(ended)
}

func (w *slogWriter) summarize(ended []warnKind) {
	for _, k := range ended {
		if k.suppressed > 0 {
			w.log.Warn("memberlist warnings suppressed", "count", k.suppressed,
				"window", warnWindow.String(), "last", k.sample)
		}
	}
}

// warnKindOf blanks the digits of a warning (addresses, ports, sizes), so
// that warnings differing only there are of one kind.
func warnKindOf(line string) string {
	b := make([]byte, 0, min(len(line), 120))
	for i := 0; i < len(line) && len(b) < 120; i++ {
		c := line[i]
		if c >= '0' && c <= '9' {
			if len(b) > 0 && b[len(b)-1] == '#' {
				continue
			}
			c = '#'
		}
		b = append(b, c)
	}
	return string(b)
}

var (
	_ io.Writer                = (*slogWriter)(nil)
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)
