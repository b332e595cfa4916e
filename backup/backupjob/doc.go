// Package backupjob is the backup job kind: it validates definitions
// (/_replds/jobs/backup/NAME, a JSON Spec) and runs them on the server the
// cluster chose, writing full and incremental backups with package backup
// to the job's target, applying retention after each, and verifying the
// newest chain on its own schedule.
//
// # Runs
//
// A run is due at the schedule's next time after the last run began (as
// the status node records it, so a runner that takes a job over keeps its
// rhythm and runs at once what was missed), or when the job's request
// node asks. It is a full backup when the target holds none, when the
// chain of the newest backup is broken or of another prefix, or when the
// Full rule says so; otherwise an incremental whose parent is the newest
// backup. Runs of one job never overlap: what fell due meanwhile is
// counted as skipped.
//
// # Invariants
//
//   - A full backup is a Store.Snapshot: one read transaction, streamed
//     page by page to the target; an incremental is a Store.Delta from
//     the parent's vector, costing what changed, with the content root of
//     the whole prefix from the same transaction.
//   - A backup is complete once its manifest is written (last); a run
//     that fails or is stopped removes what it wrote. An incremental that
//     finds nothing writes nothing.
//   - An incremental's state covers its parent's: a runner whose store
//     lacks writes of the parent makes a full backup instead.
//   - The servers hold only recipients (public keys): encrypted backups
//     are verified by checksum here, by content with the identity given
//     to `replds backup verify`.
//   - A job reads with the rights of its owner, checked when it is
//     defined (read on the prefix).
package backupjob
