package cluster

import (
	"net"
	"strings"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as the local member sees it.
type State int

const (
	// Alive: memberlist lists the member. That includes a member it
	// suspects of failing: its events do not report suspicion, so a
	// suspected member is Alive until it is declared dead.
	Alive State = iota
	// Dead: the member failed and has not joined again.
	Dead
	// Left: the member left the cluster on purpose.
	Left
)

// String returns the state's name as `replds status` and the metrics show
// it: "alive", "dead" or "left".
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return "unknown"
}

// Live reports whether a member in state s is listed by memberlist.
func (s State) Live() bool { return s == Alive }

// Member is a snapshot of one cluster member.
type Member struct {
	// Name is the member's name.
	Name string
	// State is the member's state.
	State State
	// Self marks the local member.
	Self bool
	// Meta is what the member advertises (for a member that failed or
	// left: what it advertised last).
	Meta
}

// Meta is what a member advertises to the others.
type Meta struct {
	// GRPCAddr is where the member serves its gRPC API.
	GRPCAddr string
	// Ready reports that the member takes traffic: it joined and caught up
	// with a peer, or is alone by configuration. A member running a
	// version from before readiness was advertised is never Ready.
	Ready bool
}

// Encoding of Meta in memberlist's node metadata: metaVersion, a flags
// byte, then the gRPC address. Older members advertised the bare address,
// which never starts with metaVersion (a control character).
const (
	metaVersion = 1
	metaReady   = 1 << 0
)

// encode returns m as node metadata.
func (m Meta) encode() []byte {
	var flags byte
	if m.Ready {
		flags |= metaReady
	}
	return append([]byte{metaVersion, flags}, m.GRPCAddr...)
}

// decodeMeta parses the metadata of n, turning an advertised gRPC address
// without a host into one at the address n's gossip comes from.
func decodeMeta(n *memberlist.Node) Meta {
	b := n.Meta
	var m Meta
	if len(b) >= 2 && b[0] == metaVersion {
		m.Ready = b[1]&metaReady != 0
		b = b[2:]
	}
	m.GRPCAddr = reachableAddr(string(b), n.Addr)
	return m
}

// reachableAddr returns the gRPC address a member advertises. A member that
// listens on all addresses (--addr=:12100) advertises no host: it is then
// reached at the address its membership traffic comes from (from).
func reachableAddr(addr string, from net.IP) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil || (h != "" && !net.ParseIP(h).IsUnspecified()) || from == nil {
		return addr
	}
	return net.JoinHostPort(from.String(), p)
}

// compareMembers orders members: live ones first, then by name.
func compareMembers(a, b Member) int {
	if a.State.Live() != b.State.Live() {
		if a.State.Live() {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}
