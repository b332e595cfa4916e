// Package jobs runs the cluster's own jobs (backups, replication from
// another cluster) inside the servers, and holds what every kind of job
// shares: schedules, the choice of the one server that runs a job, and the
// status a job publishes.
//
// # Jobs are nodes
//
// A job is defined by a leaf /_replds/jobs/KIND/NAME whose data is a JSON
// spec; the runner publishes /_replds/status/KIND/NAME. Both are ordinary
// nodes: they replicate, any server answers for them, the same ACLs govern
// them. The package does not read or write the tree itself: the server
// hands a Manager the definitions it holds (SetDefs) and the live, ready
// members (SetMembers), and gives it a StatusWriter to publish with. The
// package therefore imports neither the store nor the server.
//
// # One runner
//
// Owner picks the member that runs a job by rendezvous hashing of the job's
// path with each live, ready member's name: every server computes the same
// answer from the same membership, and when the runner leaves only its jobs
// move. Views of the membership can briefly disagree, so two servers may
// run one job for a moment: every step a Kind takes must be idempotent
// (a backup commits by writing its manifest last; replicated nodes keep
// their source versions).
//
// # Invariants
//
//   - An instance waits Config.Settle before its first Run: a membership
//     view about to be corrected stops it before it acts or publishes.
//   - A Manager runs at most one instance of a job at a time; a changed
//     spec stops the running instance (its context is cancelled) and the
//     new instance's first Run waits until the old Run has returned. The
//     Manager itself never waits for a Run under its lock: a slow cleanup
//     holds up that job only.
//   - A Kind's Run returning an error is logged and retried with backoff
//     while the job is still owned; returning nil ends the instance until
//     the spec or the ownership changes.
package jobs
