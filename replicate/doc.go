// Package replicate is the replication job kind: a job defined in a
// destination cluster at /_replds/jobs/replicate/NAME follows a prefix of
// another (source) cluster and applies it under a destination prefix, so
// that one cluster mirrors another, one way or both ways.
//
// The runner (one server of the destination, chosen by package jobs)
// follows a Watch on the source servers with a follow.Follower, failing
// over between them, and is the follower's Sink: each page is rewritten
// from the source prefix to the destination prefix and applied in one
// Applier call (server.Writer.ApplyAdvance), nodes keeping their source
// version, origin and seq, so that last-write-wins picks the same winner
// in both clusters and a repeated node is a no-op.
//
// State and invariants:
//   - The resume token (the source's vector at the last applied bookmark)
//     lives in the job's status node (/_replds/status/replicate/NAME,
//     Detail.Token), published at most every PublishEvery and when the
//     runner stops. A new runner resumes from the lower, per origin, of
//     that token and its own store's vector, so it skips nothing its
//     predecessor applied that has not reached it yet; what comes again is
//     a no-op.
//   - Applied nodes keep foreign origins whose seqs have gaps (only the
//     prefix is followed); after a bookmark the runner raises its vector
//     for the source's origins to the token (store.Advance), so digest
//     sync among the destination's servers does not resend them each
//     round. This cluster's own origins are never advanced.
//   - Loops: the Watch request lists this cluster's origins (learned
//     from its members with server.ClusterOrigins) in exclude_origins, so
//     the source never sends back a node first written here; Apply drops
//     any that come anyway.
//   - Requests (/_replds/requests/replicate/NAME, {"action": ...}) are
//     handled once: the last handled version is in the status detail.
//     "stop" records the source's vector then (Detail.StopAt) and stops
//     once the token covers it; "abort" stops at once; "start" resumes.
//
// Concurrency: the runner's main goroutine owns requests, lag
// measurement and publishing; the follower's goroutine calls the Sink
// methods; a mutex guards what both touch.
package replicate
