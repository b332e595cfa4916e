// Package follow follows the Watch stream of a prefix across the servers
// of a cluster and hands what it receives to a Sink. It is the client half
// of the Watch protocol, shared by `replds pull` (package watcher, whose
// sink writes files) and by server-side jobs that follow another cluster
// (whose sink writes into their store).
//
// A Follower owns:
//   - the list of servers and their connections: a gRPC client per server,
//     made with the caller's DialOptions (transport security stays with the
//     caller) plus the follower's keepalive; or, with Config.Source, any
//     Source of Watch streams (an in-memory server in a simulation);
//   - failover: one stream at a time, from a random server, moving to the
//     next after any failure, with exponential backoff and full jitter
//     between attempts (reset by a session that delivered a bookmark);
//   - idle detection: a stream silent for IdleTimeout (servers send a
//     bookmark at least every BookmarkInterval) is abandoned; only the
//     server's silence counts, not the time the sink spends;
//   - the resume token, which it does not store: it asks the sink for it
//     (Sink.Token) before each session, so the sink's persisted state is
//     the only truth and a restart resumes where the sink stopped;
//   - whether the stream is a complete replay (a nil token, or a reset):
//     it tells the sink when one begins (Sink.Reset, so that no path of an
//     earlier, failed replay counts as seen) and marks its pages and its
//     last bookmark (Page.Full, Bookmark.Full).
//
// The follower reads time only through Config.Clock and draws randomness
// only from Config.Rand (nil = the real ones), so that a seeded simulation
// can drive it over in-memory Sources. Package followtest holds MemSink,
// an in-memory Sink for such tests.
//
// The Sink contract is in its doc comment: calls come from Run's goroutine,
// one at a time, in stream order; a Sink error ends the session and is
// retried from the sink's token, unless it wraps ErrPermanent. Handle is
// the protocol step without a transport (one message to a sink), for
// tests and simulations.
//
// Invariants:
//   - The follower never persists anything and never looks at node paths or
//     data: it imports neither the store nor the file mirror.
//   - A session's first request carries exactly the token the sink
//     returned; after a failed sink call the next session starts from the
//     sink's token again, so nothing is lost and a repeat is harmless under
//     last-write-wins (package lww).
package follow
