// Command bench measures replds against the performance targets of issue 5
// with real processes on loopback, and optionally etcd 3.4 with the same
// workload.
//
//	go run ./bench                 # everything: 100k-node rows, 10k/100k/1M scales, 10k streams
//	go run ./bench --quick         # 10k nodes, scales 1k/10k, 1000 streams, 100 samples
//	go run ./bench --rows=store,latency --compare-etcd
//	go run ./bench --rows=resume,restore --seams-nodes=100000
//	go run ./bench --rows=backup,restore-backup,backup-s3
//	make bench BENCHFLAGS=--quick
//
// It builds ./cmd/replds (or uses --bin), starts servers with
// --addr=127.0.0.1:0 in directories of their own under a temporary work
// directory, reads the chosen ports from their logs, generates the data,
// runs the rows, prints a table and writes --out/results.json,
// --out/results.md (the table in Markdown) and --out/bench.svg (latency
// CDF; bytes per idle sync round against the store size). Every process
// runs in its own process group with a parent-death signal and is killed
// when its phase ends, on errors and on interrupt.
//
// # Rows
//
//   - store: `replds store` of a generated tree of --nodes files (--size
//     bytes each) to server 1, timed from the command's start until all
//     three servers report the nodes (Status) with equal hash roots. The
//     row is the median of --store-runs uploads (3), each into an empty
//     cluster; the note lists every run and the CPU time of each process.
//   - latency: a running `replds pull` on server 3 mirrors a prefix; the
//     bench writes one node at a time on server 1 and times until inotify
//     reports the file renamed into place (IN_MOVED_TO): the write, its
//     fsyncs on both servers, the push, the Watch and the pull's own
//     temp-file/fsync/rename are all inside.
//   - idle: with N nodes loaded and the servers converged, the bytes that
//     crossed between servers during --idle, divided by the number of Sync
//     RPCs in that window (see "Bytes between servers").
//   - memory: RssAnon (/proc/PID/status), the largest of the three
//     servers, 13 s after they converged on N nodes (what the load left
//     for the garbage collector still mapped: an idle Go process collects
//     only when the runtime forces it, every 2 minutes), again after
//     --settle of idleness (the steady figure), and of one server
//     restarted on its data (what holding the nodes takes, no load
//     history).
//   - disk: allocated blocks (st_blocks) of the largest data directory,
//     divided by nodes x size.
//   - pull: `replds pull --once` of the --nodes subtree into an empty
//     directory, from server 2.
//   - pull-busy: the same while the bench keeps rewriting a 512 MiB file
//     in the work directory's filesystem at 64 MiB/s, never syncing it
//     (the pull starts once 256 MiB are written): a pull must not wait
//     for other processes' data.
//   - join: a fourth, empty server joins the cluster of the largest scale;
//     timed until it holds every node with the same root, its RssAnon
//     sampled every 100 ms for the peak.
//   - watch: --streams Watch streams on server 2 (1000 per connection);
//     the server's RssAnon before and after opening them (per idle
//     stream), then one write and the time until every stream received it.
//   - resume: on a cluster of two servers holding --seams-nodes nodes
//     (1M; --quick 10k), a Watch of the data prefix from no bookmark, then
//     100 nodes rewritten, then a Watch resumed from the first one's
//     bookmark: the time until its replay ends (the Synced bookmark) and
//     the protobuf bytes it sent, the full replay in the note. A resume
//     costs what changed, not what the prefix holds.
//   - restore: on the same cluster, the second server is stopped, its data
//     directory copied, restarted; 1 node in 100 is rewritten on the
//     first; once both agree, the second is stopped again and restored
//     from the copy. Timed from that restart until both servers hold the
//     same nodes and hash root, with the bytes between them (by method).
//     The restored server's vector is behind, so it catches up by digest
//     sync; hash-tree repair, for differences no vector shows, is measured
//     in the store (go test ./store -bench Store_Bucket).
//   - backup: on the same cluster, a subtree of --seams-nodes/100 more
//     nodes (/bench/sub) is loaded, then `replds backup create` defines a
//     job backing up / to a file:// target; its first run, a full backup,
//     starts at once on the server the cluster picks. Reported: the run's
//     duration as its runner measured it (the job status, read from the
//     status node as `backup status --json` does), the wall time from the
//     command's start until the status shows the run done, the runner's
//     RssAnon growth (peak, sampled every 100 ms, less the figure before)
//     and the target's size. Then 1,000 nodes change and `backup run`
//     makes an incremental: its duration and wall time.
//   - restore-backup: the backup cluster is stopped; `replds restore
//     --merge` of that backup into an empty cluster of three servers,
//     timed from the command's start until all three hold every node.
//     There, the whole /bench/sub subtree is rewritten, then rolled back
//     with `replds restore --prefix=/bench/sub`: the command's time (it
//     verifies the whole chain before it writes), checked against its
//     summary (every node of the subtree changed, none added or deleted).
//   - backup-s3: --s3-nodes nodes (100k; --quick 10k) on one server,
//     backed up to a bucket of versitygw (an S3 server) on loopback, then
//     restored with --merge into another, empty server. The servers and
//     the restore get the S3 credentials in their environment. Skipped,
//     with a log line, when versitygw is on neither PATH nor $GOPATH/bin.
//
// # Bytes between servers
//
// Traffic is counted outside the servers: each server gets a TCP proxy run
// by the bench, advertises the proxy's address to its peers
// (--advertise-addr) and is given the other proxies as --peer, so every
// gRPC byte one server sends another crosses exactly one proxy, while the
// bench's own clients talk to the servers directly. The proxy counts TCP
// payload bytes both ways and follows the HTTP/2 framing: it decodes the
// HPACK request headers of each stream to learn its method, counts RPCs by
// method and charges every frame to its stream's method (stream 0 frames
// and the preface to "(connection)"). An idle round's figure is therefore
// all gRPC traffic in the window (connection-level pings and window
// updates included) per Sync RPC seen on the wire. Not counted: TCP/IP
// headers, and memberlist's own gossip (UDP and TCP on the gossip port),
// which carries membership only, never data.
//
// # Profiles
//
// With --profile, replds is built with an extra file added through a Go
// build overlay (the repository is untouched) that serves net/http/pprof
// when REPLDS_BENCH_PPROF is set; the bench then records a CPU profile of
// every server during the store, load, join and watch phases and heap
// profiles after them, under --out/profiles.
//
// # etcd
//
// --compare-etcd installs Debian's etcd-server and etcd-client packages
// when etcd is missing (apt-get, as root; nothing else is downloaded),
// starts a 3-member cluster on loopback and drives it through its
// HTTP/JSON gateway with net/http: the store row as --nodes puts by 16
// concurrent writers to member 1, timed until every member holds them
// (serializable count); latency as a put on member 1 until a /v3/watch
// stream on member 3 delivers the event; memory (RssAnon and VmRSS) and
// disk (WAL included) after the load.
package main
