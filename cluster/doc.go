// Package cluster holds a server's view of its cluster's membership, on
// hashicorp/memberlist: which members exist, whether each is alive,
// failed or gone on purpose, where its gRPC API is, and whether
// it is ready to take traffic. Data never travels over it.
//
// A Membership is created with New (it binds the gossip address), joins the
// configured peers in Run (and joins them again while they are not alive
// members: a partition or a restart could otherwise leave the cluster split
// in two), and leaves the cluster on Close, announcing that the departure
// is on purpose so that the others report the member as left, not dead.
//
// Readers ask Members for a snapshot and wait on Changed for the next
// change; neither blocks on the network. The local member's metadata (its
// gRPC address and readiness) rides on memberlist's node metadata, so every
// member sees every other member's readiness (see Meta for the encoding).
// A member from before that encoding advertises a bare address: it is read
// as never ready. It cannot read the new encoding, so a cluster is
// upgraded across this change all at once.
//
// Invariants:
//   - Members lists each member once: the live ones (Alive) first,
//     then those that failed (Dead) or left (Left) within the last
//     Config.ReapAfter (1 h by default) and have not joined again nor been
//     forgotten, each group sorted by name. Changed fires at every change,
//     the reaping included (Run reaps every RejoinInterval).
//   - memberlist calls into a Membership only until Close: callbacks that
//     fire later (suspicion timers) do nothing, and nothing is logged after
//     Close returns.
package cluster
