// Package watcher is the host side of replds: it mirrors a remote prefix
// into a local directory (replds pull) and runs triggers when it changes.
//
// A Watcher is a follow.Follower (servers, failover, backoff, idle
// detection, resets: see package follow) feeding the file mirror, the
// applier, which implements follow.Sink and follow.Timer. The watcher owns
// what is local: the mirror directory (mirror.go, snapshot.go for atomic
// mode), the state file (state.go, the only code that knows its buckets),
// the triggers and their quiescence schedule (batch.go), and the metrics.
//
// Every message carrying a bookmark ends a batch (the initial replay is
// one batch). Nodes are applied as they come, a page per state transaction,
// and only when newer than what was applied for the path under
// last-write-wins (lww.Stamp, the servers' rule): versions never go
// backwards, even after failing over to a server that is behind. The
// resume token the follower asks for is the one persisted at the last
// bookmark (nil while a full resync is pending).
//
// In atomic mode (Config.Atomic, see snapshot.go) the store directory is a
// symlink to a snapshot directory beside it. A batch is written into a new
// snapshot, a copy of the current one with unchanged files hard-linked,
// and published after the bookmark's state commit by renaming a new
// symlink over the store directory; then the old snapshot is removed and
// the triggers run.
//
// Invariants:
//   - Nothing is written outside the store directory and no symlink is ever
//     followed: all file operations go through an os.Root, parents are
//     checked segment by segment, leaves are replaced by rename.
//   - A file is replaced atomically (temp file created with the final mode,
//     written, made durable, renamed, directory fsynced) before the state
//     records its version, so a crash never loses a change or refetches what
//     is on disk: at worst a replayed node is skipped as already applied.
//     The files of a page are made durable before any of them is renamed:
//     an fsync each, many at once, by workers that sync a file while the
//     page writes the next (on Linux, each file's writeback is started as
//     it is written). Only the page's own files are synced, never the
//     whole filesystem, so a pull does not wait for other processes' data.
//     A page whose sync fails commits nothing and leaves no temp file.
//   - The resume token is persisted at each bookmark, together with the
//     hand-over of the batch's changes to the pending set of every trigger
//     whose path covers them. A trigger's pending set is cleared in the same
//     transaction that records its successful run, so a batch is handled
//     once per trigger even across crashes (a crash in the instant between
//     a command's exit and that commit runs it again: at least once).
//   - A leaf with live nodes under it is shadowed: the directory wins on
//     disk, the leaf's data is kept in the state and written back once the
//     directory empties.
//   - A leaf that a local directory (not the mirror's) keeps from being
//     written is blocked: applied, its data kept in the state, written by
//     the first later bookmark that finds the way clear. It is never
//     counted as written, and a Once run that ends with one fails.
//   - Shadowed and blocked leaves are the only node data the state holds;
//     once such data is deleted, replaced or written out, the state file
//     is compacted (erase.go) when the batch is sealed, so that bbolt's
//     freed pages do not keep it.
//   - After a reset (and for any replay from an empty token), the replay is
//     the complete state: leaves it did not hold live (absent, or a
//     tombstone, even an older one) are deleted when it ends.
//   - The mirror converges (check.go): before the first session, every file
//     the state expects is compared with the summary recorded when it was
//     written (stat first, the content hash only when size, mtime or inode
//     moved); a drifted one is marked for repair and a full resync begins,
//     whose replay writes it again at the version already applied. A
//     repair the replay cannot make (a server behind) stays pending.
//   - Atomic mode: the current snapshot is never written (only tidied at
//     start); a snapshot directory under its final name is complete; the
//     store directory links to the sealed snapshot, or to the one before
//     it until the next start or session completes the swap.
//
// State file (bbolt, next to the store directory, never inside):
//
//	meta     schema -> u64 2 (a state of 1, whose records have no file
//	         summary, is upgraded: the first check adds them);
//	         prefix, dir -> what the state belongs to;
//	         token -> proto Vector (resume token, last bookmark);
//	         batch -> u64 number of the last sealed batch that changed
//	         something; full -> present while a full resync runs;
//	         snap -> u64 number of the last sealed snapshot (atomic mode)
//	nodes    remote path -> version u64 | origin u64 | deleted u8, then
//	         for a live leaf written to the mirror: size u64 | mtime ns
//	         u64 | inode u64 | sha256 [32] (tombstones included)
//	shadow   remote path -> 0x01 | data of a leaf shadowed by a directory
//	batch    remote path -> before u8 | after u8: changes of the open batch
//	         (received since the last bookmark)
//	seen     remote path -> 0x01: paths received during a full resync
//	pending  trigger name -> bucket of remote path -> before u8 | after u8:
//	         changes the trigger has not handled yet
//	handled  trigger name -> u64 batch number of its last successful run
//	repair   remote path -> 0x01: a live leaf whose file drifted, to be
//	         written again by the pending full resync
//	blocked  remote path -> 0x01 | data of a live leaf a local directory
//	         kept from being written
//
// "before"/"after" say whether the path's file was in the mirror before the
// first and after the last change: added, changed or deleted follows. The
// changes handed to triggers are thus what they can see on disk, named by
// remote path; a shadowed leaf's updates are none, its shadowing and its
// restoring are a deletion and an addition.
package watcher
