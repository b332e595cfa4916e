// Package server runs one replds peer: the public gRPC API (Store, Get,
// List, Watch, Status), the internal replication API (Hello, Push, Sync,
// Tree, Buckets), the wiring of cluster membership (package cluster: the
// server advertises its gRPC address and readiness, and answers Hello for
// joining peers), and the three replication layers of docs/design.md, and, with
// Config.HTTPAddr, the operations endpoints /metrics, /healthz and /readyz
// (metrics.go, http.go; each Server has its own Prometheus registry).
//
// The replication loops (pushers in peers.go, sync rounds in sync.go,
// repair) reach peers only through a transport (transport.go): gRPC in
// production, an in-memory one in the simulation test. The protocol
// functions themselves (replicate.go) take no transport at all. Pushers
// wake on the store's own commits (store.Written), whoever wrote.
//
// Invariants:
//   - A Store RPC is answered only after its batch is durable in the local
//     store; replication to peers happens afterwards (eager push), and
//     anything a push missed is found by the next digest sync.
//   - Membership decides only who is alive; data never travels over
//     memberlist, only over gRPC.
//   - A Watch stream never sends a bookmark that covers a write it has not
//     sent (when under its prefix), so the bookmark is a resume token valid
//     on any server. Its replay and live changes come from a store.Feed
//     (watch.go), which resumes from the change index when the client
//     lacks few changes.
//   - Every write this server originates, or imports for a job, goes
//     through the server's Writer (write.go): the Store RPC and the
//     server's own writers alike, so metrics, the "stored" log, the start
//     check (no write before the peers said what they have seen of this
//     server's writes) and the shutdown (no write once Close has begun)
//     apply in one place. Replication from peers (push, sync, repair)
//     applies to the store directly. RPC handlers only check, call and
//     return plain errors; one interceptor pair maps them to gRPC codes
//     with the table in errors.go.
//   - The reserved namespace nodepath.Reserved (reserved.go) belongs to
//     the cluster. Clients may write only job definitions, leaves
//     nodepath.Jobs/<kind>/<name> of a kind registered with
//     RegisterJobKind, whose validator checks (and may rewrite) the spec;
//     everything else there (nodepath.Status, /_replds/healthz, paths not
//     yet given a meaning such as run requests) is written by the servers
//     alone, through the Writer, and refused to clients with
//     PermissionDenied whatever the ACLs. ACL rules on "/" do not cover it
//     (package acl). A Watch or List of "/" leaves it out; a prefix naming
//     it (nodepath.Reserved or under) includes it.
//   - Hostile load is bounded before it costs memory (guard.go,
//     watchlimits.go, handshake.go): TLS handshakes in time and number;
//     a Store from an identity with no write rule and internal RPCs from
//     non-peers refused before their body is read (gRPC's tap); requests
//     of small methods bounded in bytes before they are decoded; Store
//     bytes in flight, Watch streams per connection and identity, and
//     the bytes Watch streams have queued bounded server-wide. No
//     per-stream state grows with what a client sends. Every refusal is a
//     status and a replds_refused_total{reason} count.
//   - Every goroutine is started through Server.goFunc and is waited for by
//     Close, which is idempotent and ordered: stop RPCs, leave membership,
//     stop background loops and the HTTP listener, close the store. New
//     releases what it took, in reverse order, when a step fails.
package server
