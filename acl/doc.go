// Package acl holds replds access-control policy: the rule file format, its
// parser, and the checks the server runs for every request and for every node
// it streams on a Watch.
//
// # Rule file
//
// One rule per line, fields separated by any whitespace:
//
//	identity path operation    # operation: read, write, r or w
//	identity peer              # server-to-server synchronization
//
// A '#' starts a comment, on its own line or after a rule; blank lines are
// ignored. The identity is the Common Name of a verified client certificate;
// it therefore cannot contain whitespace, '#' or control characters. Paths are
// absolute and canonical ("/", or "/a/b": no empty, "." or ".." segments, no
// trailing slash, no control characters, no backslash, valid UTF-8).
//
// # Semantics
//
//   - With an ACL configured, everything is denied unless a rule allows it.
//   - A path rule covers its path and everything below it, on segment
//     boundaries: "/a/b" covers "/a/b" and "/a/b/c", never "/a/bc"; "/" covers
//     every path except those of the reserved namespace "/_replds"
//     (nodepath.Reserved), where the cluster keeps job definitions and
//     status: reading or writing there takes a rule naming "/_replds" or a
//     path under it.
//   - Write does not imply read, nor read write: an identity that stores and
//     also pulls needs both rules.
//   - Peer ignores paths: it allows the internal replication protocol, and
//     the server requires it on both ends of a server-to-server connection.
//   - A nil *ACL means "no ACLs configured" and allows everything. The server
//     decides, by loading or not loading a file, whether it runs deny-by-default.
//
// # Invariants
//
// An *ACL is immutable once returned by Parse or Load and safe for concurrent
// use. Reloading (on SIGHUP) builds a new *ACL and swaps it in a Holder, so a
// reader holding an *ACL always sees one consistent rule set.
package acl
