// Package backup is the backup format: it writes a backup of a store's
// nodes into a target (package backup/target), and lists, verifies,
// rebuilds and prunes the backups found there. It holds no server code: the
// server's backup job feeds a Writer from a store snapshot or feed, and the
// CLI (backup list/verify, restore) reads through List, Chain, Verify and
// Rebuild.
//
// # Layout
//
// A backup is the directory JOB/ID/ of a target:
//
//	JOB/ID/nodes-000001.zst       node files (".zst.age" when encrypted),
//	JOB/ID/nodes-000002.zst       numbered from 1, in the order written
//	JOB/ID/manifest.json          the Manifest, written last
//	JOB/ID/verify.json            the last Verification, if any (replaced)
//
// IDs sort by time: the UTC time of the backup to the millisecond and a
// short random suffix, "20261202T174501.123Z-3f9a" (NewID).
//
// # Invariants
//
//   - A backup is complete if and only if its manifest.json exists. The
//     manifest is written last, with PutIfAbsent, after every node file is
//     stored; a directory without one is an incomplete leftover (a crashed
//     or aborted run) that List ignores and Retain deletes after a grace
//     period. Deleting a backup deletes its manifest first.
//   - Objects are never rewritten: node files and manifests are immutable
//     once stored (verify.json alone is replaced).
//   - A full backup holds the live nodes and tombstones under its prefix
//     (less the excluded prefixes) at its vector, in strictly increasing
//     path order (Go string order, bytewise); the Writer refuses anything
//     else, and Rebuild checks it. An incremental holds the winners since
//     its parent's vector, tombstones included, in any order; its Parent is
//     the backup it follows. A chain is a full and the incrementals that
//     follow it, each naming the previous as its parent.
//   - Each File in the manifest records the size and SHA-256 of the bytes
//     stored in the target (after compression and encryption), so that
//     integrity can be checked without the decryption key.
//   - Root is a content root (see Root) of the live nodes of the state the
//     backup reflects: for an incremental, that of its whole chain.
//   - Node data never appears in errors or logs: paths, versions, sizes and
//     hashes only.
//
// # Node files
//
// A node file is a record stream, compressed with zstd (one stream), then,
// when the backup has recipients, encrypted with age to X25519 recipients.
// A file holds about WriterOptions.FileBytes (64 MiB) of uncompressed
// records; a record is never split. The uncompressed stream is:
//
//	header:  "RPLDSBK" 0x00, then the format as one byte (FormatVersion)
//	record:  0x01, then uvarint len(path), path,
//	         uvarint version, uvarint origin, uvarint seq,
//	         one flags byte (bit 0: deleted; other bits zero),
//	         uvarint len(data), data
//	trailer: 0x00, then uvarint count of records
//
// Integers are unsigned varints (encoding/binary). The trailer makes a
// truncated stream detectable whatever the compression; its count must
// equal the File's Nodes. Paths are at most 4096 bytes and data at most
// MaxNodeData bytes; a reader refuses larger lengths as corrupt.
//
// # Reading
//
// Rebuild streams: the incrementals of a chain are read into memory (newest
// wins), then the full is streamed in path order and merged with them, so
// memory is proportional to the incrementals, not to the full. A file's
// checksum can only be checked once it has been read to the end, so Rebuild
// may hand over nodes of a file whose checksum then fails: callers that
// must not act on corrupt data run Verify first, or buffer.
//
// # Concurrency
//
// A Writer is used by one goroutine; it owns one upload goroutine per node
// file being written, which it waits for before Commit or Abort return.
// The other functions are safe for concurrent use, as targets are.
package backup
