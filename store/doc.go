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
// nodes (Store.Apply) keep their stamps and win on Newer (but never bring
// back what a collected tombstone deleted: see below); Apply makes no
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
//	        "floor"  -> collection floor: version(8), then origin(8)
//	                    seq(8) per origin (absent: nothing collected)
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
// # Tombstone collection
//
// Collect removes the tombstones a caller (the server, which knows what
// every replica holds) says every replica has: older than a version bound
// and covered by a vector. Node and log entry go in one transaction on
// the committer, memory after it commits; the freed radix-tree entries are
// reused, so memory and file follow the live set plus the tombstones of
// the grace period, not every path ever written. The same transaction
// raises the collection floor (Floor), persisted in the state bucket:
//
//   - Floor.Vector, per origin the highest seq collected: a consumer whose
//     vector is below it for some origin may hold a node whose delete is
//     gone. A Feed from such a vector fails with ErrCollected (at its
//     start, and at the end of any catch-up, for a collection that ran
//     meanwhile); the consumer starts again from nothing (Watch: a reset).
//   - Floor.Version, the highest version collected: a live node at or
//     below it arriving by Apply at a path the store does not hold may
//     be one a collected tombstone deleted (a peer restored from an old
//     backup sends it back). Apply never stores it: it stamps a tombstone
//     of its own origin and next seq, one version above the node, which
//     deletes it wherever it lingers. Bury does the same for the nodes a
//     repair finds the peer lacks, given the peer's floor. A tombstone
//     below the floor is stored as any tombstone (it deletes nothing
//     live), and collected again.
//
// RaiseFloor raises the floor to a peer's when a sync advance passes
// deletes the peer collected (this store never saw them); a live Feed
// whose consumer a raised floor passes fails with ErrCollected at the
// next commit it reads (Store.floorGen tells it the floor moved).
//
// Invariants: a collected path is absent from the nodes bucket, the log,
// the radix tree, the hash tree, the bucket index and the stats; the floor
// in memory equals the file's; no live node at or below Floor.Version is
// ever stored at a path the store did not hold.
//
// # Reading: pages, snapshots, feeds
//
// Scan and Changes return one page each, from their own read transaction.
// Snapshot reads a prefix page by page from one read transaction, with the
// vector stored in that transaction: the nodes and the vector describe
// exactly one state, and commits made meanwhile are not seen. Only one
// page is in memory at a time.
//
// Feed answers "the winners under these prefixes since vector V, then
// every change": a consumer holding From gets, in pages bounded in nodes
// and bytes, every winner under the prefixes whose write From does not
// cover, tombstones included, and then one page per commit that changed
// something it lacks. Its guarantees:
//
//   - No gap: the feed subscribes before it reads the store's vector, so
//     every commit is either in the store it reads or in the
//     subscription. The catch-up reads, per origin, every log entry above
//     From's entry that the log held when it began (not only up to the
//     vector: nodes brought by hash-tree repair carry seqs no vector
//     covers yet), or scans the prefixes for every node From does not
//     cover.
//   - Order: catch-up pages first (per origin in seq order, or in path
//     order), the last one marked Caught; then live pages in commit order.
//     A node may come twice (in the catch-up and in a live page), never
//     older after newer within the live pages; consumers apply by version.
//   - Bookmarks: every page carries the vector the consumer holds once it
//     has the page (Caught: everything as of the catch-up's vector); a
//     feed opened from that vector misses nothing.
//   - Overflow: a consumer more than Buffer commits behind loses its
//     subscription; the feed catches up from the store again, from the
//     last vector it delivered. Memory stays bounded by Buffer commits and
//     one page.
//   - Source: the catch-up reads the change index when the store's vector
//     is less than indexCost changes per node ahead of From (estimated
//     against the nodes under the prefixes, counted up to that bound, or
//     the store's stats for "/"), and scans the prefixes otherwise.
//   - Keep filters nodes (ACLs): it runs inside read transactions or on
//     the consumer's goroutine, must not block or call the Store, and must
//     answer the same for a path for the life of the feed.
//
// # Hash-tree buckets
//
// Besides the radix tree, memory indexes paths by hash-tree leaf bucket
// (Store.buckets), one string header per node sharing the radix tree's
// key bytes, so that Bucket costs the size of the bucket: a repair of k
// differing buckets reads O(k) buckets, not k walks of the whole tree.
// Paths are added when first stored and removed when their tombstone is
// collected, as the radix tree's entries are.
//
// # Erasing deleted data
//
// bbolt keeps a deleted or overwritten value in its freed page until the
// page is reused. A commit that deletes or overwrites node data arms a
// timer (Config.EraseInterval); when it fires, the store compacts the
// file (compact.go, package boltcompact): the committer takes a read
// transaction as a snapshot, a goroutine copies its live keys into a new
// file while commits go on, each commit recording the paths it changed;
// then the committer, between two commits, writes those paths' nodes and
// log entries and the small buckets (vector, state) whole into the copy,
// syncs it, renames it over the file and swaps Store.db under dbMu.
// Readers begin their transactions under dbMu (view) and finish on the
// file they began on, which is closed once they are done. Writes wait
// only for the catch-up and the swap; a commit the compaction was not
// told of (the write transaction ids tell) makes it copy the file again
// with the committer held, never miss it. Hence the rule for new write
// paths: a commit records the paths whose nodes or log entries it wrote
// (commitTx does, from the group's changes) or calls noteOtherCommit. Data replaced by the catch-up
// is in the new file's freed pages: it arms the timer again. So the data
// of a node deleted or overwritten at t leaves the file by t +
// EraseInterval + the duration of two compactions. A crash at any point
// leaves the old file or the complete copy at Config.Path; Open removes
// an unfinished copy.
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
