package acl

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/replds/replds/nodepath"
)

// Op is an operation an ACL rule allows. The zero Op is not a valid
// operation and is never allowed by a non-nil ACL.
type Op int

// The operations of ACL rules.
const (
	// Read allows reading (watching, pulling) nodes under a path.
	Read Op = iota + 1
	// Write allows storing and deleting nodes under a path. It does not
	// imply Read.
	Write
	// Peer allows the server-to-server replication protocol. It takes no
	// path.
	Peer
)

// String returns the operation's canonical name as written in rule files:
// "read", "write" or "peer".
func (o Op) String() string {
	switch o {
	case Read:
		return "read"
	case Write:
		return "write"
	case Peer:
		return "peer"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// ParseOp parses an operation as written in rule files: "read" or "r",
// "write" or "w", "peer". Names are case-sensitive.
func ParseOp(s string) (Op, error) {
	op, ok := parseOp(s)
	if !ok {
		return 0, fmt.Errorf("acl: %s", unknownOpMsg(s))
	}
	return op, nil
}

func parseOp(s string) (Op, bool) {
	switch s {
	case "read", "r":
		return Read, true
	case "write", "w":
		return Write, true
	case "peer":
		return Peer, true
	}
	return 0, false
}

func unknownOpMsg(s string) string {
	return fmt.Sprintf("unknown operation %q (want read, write, r, w or peer)", s)
}

// Rule is one line of a rule file: Identity may perform Op on Path and
// everything under it. Path is empty for Peer rules.
type Rule struct {
	Identity string
	Path     string
	Op       Op
}

// String renders r as a line of a rule file, without newline:
// "identity path operation" or "identity peer". Parsing the result gives r
// back.
func (r Rule) String() string {
	if r.Op == Peer {
		return r.Identity + " " + r.Op.String()
	}
	return r.Identity + " " + r.Path + " " + r.Op.String()
}

// ACL is a parsed, immutable rule set, safe for concurrent use. Rules are
// indexed by identity, then operation, so Check costs a few map lookups
// whatever the number of rules.
//
// A nil *ACL means that no ACLs are configured: every method treats it as
// allowing everything.
type ACL struct {
	rules []Rule
	ids   map[string]*grants
}

// grants holds what one identity may do.
type grants struct {
	read, write pathSet
	peer        bool
	// readSorted holds the keys of read in ascending order, for Readable.
	readSorted []string
}

// pathSet is a set of rule paths.
type pathSet map[string]struct{}

// covers reports whether a path in s is path or one of its ancestors. path
// must be canonical. The root covers every path but those of the reserved
// namespace (nodepath.Reserved): they need a rule naming nodepath.Reserved
// or a path under it.
func (s pathSet) covers(path string) bool {
	if len(s) == 0 {
		return false
	}
	if _, ok := s["/"]; ok && !nodepath.IsReserved(path) {
		return true
	}
	// Walk path, then each ancestor up to (excluding) the root: substrings,
	// so no allocation.
	for p := path; len(p) > 1; p = p[:strings.LastIndexByte(p, '/')] {
		if _, ok := s[p]; ok {
			return true
		}
	}
	return false
}

// coversStrictly reports whether a proper ancestor of path is in s.
func (s pathSet) coversStrictly(path string) bool {
	if path == "/" {
		return false
	}
	parent := path[:strings.LastIndexByte(path, '/')]
	if parent == "" {
		parent = "/"
	}
	return s.covers(parent)
}

// newACL indexes rules.
func newACL(rules []Rule) *ACL {
	a := &ACL{rules: rules, ids: make(map[string]*grants)}
	for _, r := range rules {
		g := a.ids[r.Identity]
		if g == nil {
			g = &grants{}
			a.ids[r.Identity] = g
		}
		switch r.Op {
		case Read:
			if g.read == nil {
				g.read = make(pathSet)
			}
			if _, dup := g.read[r.Path]; !dup {
				g.read[r.Path] = struct{}{}
				g.readSorted = append(g.readSorted, r.Path)
			}
		case Write:
			if g.write == nil {
				g.write = make(pathSet)
			}
			g.write[r.Path] = struct{}{}
		case Peer:
			g.peer = true
		}
	}
	for _, g := range a.ids {
		slices.Sort(g.readSorted)
	}
	return a
}

// Check reports whether identity may perform op on path: true iff a rule for
// that identity and op covers path (the rule's path is path or one of its
// ancestors, on segment boundaries, "/" excepted for paths under
// nodepath.Reserved). Write does not imply Read. For Peer the
// path is ignored. A path that is not canonical is denied.
//
// On a nil *ACL (no ACLs configured) Check allows everything, without
// looking at path: validating paths is the caller's job.
func (a *ACL) Check(identity string, op Op, path string) bool {
	if a == nil {
		return true
	}
	g := a.ids[identity]
	if g == nil {
		return false
	}
	switch op {
	case Peer:
		return g.peer
	case Read:
		return validPath(path) == "" && g.read.covers(path)
	case Write:
		return validPath(path) == "" && g.write.covers(path)
	}
	return false
}

// Readable returns the minimal set of subtree roots under prefix that
// identity may read: [prefix] if a read rule covers prefix itself, otherwise
// the paths of the identity's read rules strictly below prefix, without
// duplicates or paths nested in another result, in ascending order. It
// returns nil when nothing under prefix is readable or prefix is not
// canonical.
//
// The server uses it to narrow a Watch: an identity allowed only
// "/data/host1" that watches "/" is served "/data/host1" and what is under it.
// As in Check, a rule on "/" does not cover nodepath.Reserved: the roots of
// an identity with rules "/" and "/_replds/status" under "/_replds" are
// ["/_replds/status"].
//
// On a nil *ACL it returns [prefix].
func (a *ACL) Readable(identity, prefix string) []string {
	if a == nil {
		return []string{prefix}
	}
	if validPath(prefix) != "" {
		return nil
	}
	g := a.ids[identity]
	if g == nil {
		return nil
	}
	if g.read.covers(prefix) {
		return []string{prefix}
	}
	under := prefix + "/"
	if prefix == "/" {
		under = "/"
	}
	var out []string
	for _, p := range g.readSorted {
		if !strings.HasPrefix(p, under) {
			continue
		}
		// A proper ancestor of p in the set is itself strictly below
		// prefix (it cannot cover prefix: checked above), so p is nested.
		if g.read.coversStrictly(p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Rules returns a copy of the rules, in file order, duplicates included. It
// returns nil on a nil *ACL.
func (a *ACL) Rules() []Rule {
	if a == nil {
		return nil
	}
	return slices.Clone(a.rules)
}

// Len returns the number of rules, duplicates included; 0 on a nil *ACL.
func (a *ACL) Len() int {
	if a == nil {
		return 0
	}
	return len(a.rules)
}

// validPath returns why path is not canonical, or "" if it is. Rules and
// checks follow the servers' own path rules (nodepath), with "/", the whole
// tree, allowed.
func validPath(path string) string {
	if path == "/" {
		return ""
	}
	return nodepath.Problem(path)
}

// validIdentity returns why id cannot be an identity in a rule, or "" if it
// can. Parsing already excludes whitespace and '#'.
func validIdentity(id string) string {
	if !utf8.ValidString(id) {
		return "not valid UTF-8"
	}
	for _, c := range id {
		if unicode.IsControl(c) {
			return "control character"
		}
	}
	return ""
}
