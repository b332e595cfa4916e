// Package store holds replds' tree of nodes: a bbolt file with every node
// and the replication state, mirrored in memory by a radix tree of metadata,
// a hash tree, counters and the version vector.
//
// # Nodes, versions, vectors
//
// A node is a path (see nodepath.Validate), a version, the origin and seq of the
// write that produced it, a deleted flag and data. Deletes leave tombstones.
// Versions are hybrid logical clock values (48-bit wall milliseconds,
// 16-bit counter), ties broken by origin (Meta.Newer). Client writes
// (Store.Write) are stamped here with this store's origin (a random
// incarnation id kept in the file), the next dense seq, and a version above
// both the path's current one and every version issued before. Replicated
// nodes (Store.Apply) keep their stamps and win on Newer; Apply makes no
// leaf/directory checks, so replicas converge to the same map whatever the
// order they see writes in. The version vector maps origin to the highest
// seq up to which every write of that origin is reflected (applied or
// superseded); the own origin's entry is the last seq issued.
//
// # bbolt layout
//
// All integers are big endian.
//
//	nodes   path -> version(8) origin(8) seq(8) size(4) flags(1) data
//	        flags bit 0: tombstone (size 0, no data)
//	log     origin(8) seq(8) -> path, for current winners only
//	vector  origin(8) -> seq(8)
//	state   "format" -> layout version (1)
//	        "origin" -> this store's incarnation id, never 0
//	        "hlc"    -> highest version issued or absorbed
//
// # Invariants
//
//   - Every node has exactly one log entry, under its own (origin, seq), and
//     every log entry names a node carrying that (origin, seq): when a node
//     is replaced its old entry is deleted in the same transaction. Changes
//     can therefore page through an origin's winners in seq order.
//   - The nodes, their log entries, the vector and the clock of one commit
//     change in one bbolt transaction, synced (unless Config.NoSync) before
//     any caller is answered, and before any subscriber is told of a Write.
//     Replicated changes (Apply) at the head of a group are told while the
//     transaction commits (see commitGroup): they are durable at their
//     origin already.
//   - Memory (radix tree, hash tree, stats, vector) equals what rebuilding
//     it from the file gives; it changes only after the transaction
//     committed, under Store.mu, by the committer goroutine. The clock in
//     memory may run ahead of the file's: absorbing a remote clock alone
//     does not warrant a write, and versions stay ordered per path anyway.
//   - A path's version only grows on this store, whatever the wall clock
//     does; the own seq is dense.
//   - The hash tree depends only on the set of (path, version, origin,
//     deleted) tuples, not on history (see hashTree).
//   - Data read from bbolt is copied before its transaction ends; data given
//     to Write or Apply is copied before it is queued. Node data is never
//     logged.
//
// # Concurrency
//
// Write and Apply queue requests for one committer goroutine, which takes
// every request waiting (up to a bound) and commits them in one
// transaction: one fsync for many writers. Requests are processed in order,
// each against the state left by the previous ones; one that fails
// validation fails alone. Readers of memory take a read lock; readers of
// data use their own short bbolt read transactions. Written (notify.go)
// wakes whoever waits for this store's own writes (the server's pushers)
// once a Write that changed something has committed and memory holds it;
// it never blocks the committer.
package store
