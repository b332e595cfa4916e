package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/limits"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// restoreFlags select a chain of backups and what of it to restore.
type restoreFlags struct {
	from, job, id, at string
	prefix, to        string
	identity          string
}

func (f *restoreFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "backup target URL: file:///dir or s3://bucket/prefix?region=R&endpoint=URL (required)")
	fl.StringVar(&f.job, "job", "", "backup job whose backups to restore (required)")
	fl.StringVar(&f.id, "id", "", "restore this backup (with the chain it ends; default: the newest)")
	fl.StringVar(&f.at, "at", "", "restore the newest backup made at or before TIME (RFC 3339, or 2006-01-02 15:04 UTC)")
	fl.StringVar(&f.prefix, "prefix", "", "restore only this subtree of the backup")
	fl.StringVar(&f.to, "to", "", "write the restored subtree under this prefix instead of its own")
	fl.StringVar(&f.identity, "identity", "", "age identity file to decrypt encrypted backups (the servers never hold it)")
}

// parseTime reads --at.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--at %q: want RFC 3339 (2026-12-02T17:00:00Z) or 2026-12-02 17:00 (UTC)", s)
}

// chosen is a chain ready to read.
type chosen struct {
	tgt   target.Target
	chain []backup.Manifest
	ids   []age.Identity
	// src is the subtree read from the backup, dst where it goes.
	src, dst string
}

// last is the backup the chain ends with.
func (c *chosen) last() backup.Manifest { return c.chain[len(c.chain)-1] }

// rewrite maps a path of the backup to its destination.
func (c *chosen) rewrite(p string) string {
	if c.src == c.dst {
		return p
	}
	rest := strings.TrimPrefix(p, c.src)
	if c.dst == "/" {
		if rest == "" {
			return "/"
		}
		return rest
	}
	if c.src == "/" {
		return c.dst + p
	}
	return c.dst + rest
}

// choose opens the target, picks the chain and checks it, before anything
// is written: every file's checksum, and the content root where the data
// is readable.
func (f *restoreFlags) choose(ctx context.Context, verify bool) (*chosen, error) {
	if f.from == "" || f.job == "" {
		return nil, errors.New("--from and --job are required")
	}
	if f.id != "" && f.at != "" {
		return nil, errors.New("--id and --at exclude each other")
	}
	c := &chosen{}
	var err error
	if f.identity != "" {
		if c.ids, err = backup.ParseIdentityFile(f.identity); err != nil {
			return nil, err
		}
	}
	if c.tgt, err = target.Open(ctx, f.from); err != nil {
		return nil, err
	}
	all, err := backup.List(ctx, c.tgt, f.job)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no complete backup of job %q in %s", f.job, c.tgt)
	}
	switch {
	case f.id != "":
		c.chain, err = backup.Chain(all, f.id)
	case f.at != "":
		var at time.Time
		if at, err = parseTime(f.at); err != nil {
			return nil, err
		}
		c.chain, err = backup.ChainAt(all, at)
	default:
		c.chain, err = backup.Latest(all)
	}
	if err != nil {
		return nil, err
	}
	last := c.last()
	c.src = last.Prefix
	if f.prefix != "" {
		if err := nodepath.ValidatePrefix(f.prefix); err != nil {
			return nil, fmt.Errorf("--prefix: %w", err)
		}
		if !nodepath.Under(f.prefix, last.Prefix) {
			return nil, fmt.Errorf("--prefix %s is not in backup %s, which holds %s", nodepath.Quote(f.prefix), last.ID, nodepath.Quote(last.Prefix))
		}
		c.src = f.prefix
	}
	c.dst = c.src
	if f.to != "" {
		if err := nodepath.ValidatePrefix(f.to); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
		c.dst = f.to
	}
	for _, m := range c.chain {
		if m.Encrypted && len(c.ids) == 0 {
			return nil, fmt.Errorf("backup %s is encrypted to %s: give --identity=FILE", m.ID, strings.Join(m.Recipients, ", "))
		}
	}
	if verify {
		v, err := backup.Verify(ctx, c.tgt, c.chain, c.ids)
		if err != nil {
			return nil, err
		}
		if !v.OK {
			return nil, fmt.Errorf("backup %s failed verification, nothing written: %s", last.ID, v.Error)
		}
	}
	return c, nil
}

// nodes calls fn with every node of the chain's state under the source
// subtree, its path rewritten to the destination, in path order.
func (c *chosen) nodes(ctx context.Context, fn func(store.Node) error) error {
	return c.nodesFrom(ctx, func(_ string, n store.Node) error { return fn(n) })
}

// nodesFrom is nodes, also passing each node's path in the backup.
func (c *chosen) nodesFrom(ctx context.Context, fn func(orig string, n store.Node) error) error {
	return backup.Rebuild(ctx, c.tgt, c.chain, backup.ReadOptions{Identities: c.ids, Prefix: c.src}, func(n store.Node) error {
		orig := n.Path
		n.Path = c.rewrite(n.Path)
		return fn(orig, n)
	})
}

// restoreCounts is a restore's summary.
type restoreCounts struct {
	added, changed, deleted, same, skipped uint64
}

// batcher groups operations into atomic batches within the limits.
type batcher struct {
	n, bytes int
	flush    func() error
}

func (b *batcher) add(size int) (full bool) {
	b.n++
	b.bytes += size
	return b.n >= restoreBatch || b.bytes >= restoreBatchBytes
}

const (
	restoreBatch      = 1000
	restoreBatchBytes = limits.MaxBatchBytes / 4
	// restoreMemory bounds the data a rollback keeps between reading the
	// backup and writing it (past it, it reads the backup again).
	restoreMemory = 256 << 20
	// importsInFlight is how many Import calls a merge keeps going to
	// each server: the server commits concurrent calls together.
	importsInFlight = 4
)

// liveState reads what the cluster holds under prefix: path -> SHA-256
// of the data of every live leaf, from a Watch replay.
func liveState(ctx context.Context, c repldspb.RepldsClient, prefix string) (map[string][32]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Watch(ctx, &repldspb.WatchRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	live := map[string][32]byte{}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("watch ended before its replay did")
		}
		if err != nil {
			return nil, err
		}
		if resp.GetReset_() {
			clear(live)
		}
		for _, n := range resp.Nodes {
			if n.Deleted {
				delete(live, n.Path)
			} else {
				live[n.Path] = sha256.Sum256(n.Data)
			}
		}
		if resp.Synced {
			return live, nil
		}
	}
}

// rollback makes the destination subtree what the backup holds: its nodes
// written as new writes (so that they win and hosts see a change), what
// did not exist then deleted, what is identical left alone.
func rollback(ctx context.Context, cmd *cobra.Command, c *chosen, rc repldspb.RepldsClient, dryRun bool) (restoreCounts, error) {
	var cnt restoreCounts
	live, err := liveState(ctx, rc, c.dst)
	if err != nil {
		return cnt, fmt.Errorf("read the live state of %s: %w", nodepath.Quote(c.dst), err)
	}
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var writes []*repldspb.Write
	b := &batcher{}
	send := func() error {
		if len(writes) == 0 {
			return nil
		}
		if !dryRun {
			if _, err := rc.Store(ctx, &repldspb.StoreRequest{Writes: writes}); err != nil {
				return err
			}
			fmt.Fprintf(errOut, "restore: %d written, %d deleted so far\n", cnt.added+cnt.changed, cnt.deleted)
		}
		writes, b.n, b.bytes = nil, 0, 0
		return nil
	}
	// First pass: what differs. It reads, and checks the checksum of,
	// every file the subtree needs, and the content root when the whole
	// backup is restored, before anything is written. The data to write
	// is kept while it fits restoreMemory; past that only paths are kept
	// and a second pass reads the data again.
	toWrite := map[string][]byte{}
	kept, keep := 0, true
	var root *backup.Root
	if c.src == c.last().Prefix {
		root = backup.NewRoot()
	}
	err = c.nodesFrom(ctx, func(orig string, n store.Node) error {
		if n.Deleted {
			return nil
		}
		if root != nil {
			if err := root.Add(orig, n.Version, n.Origin, n.Seq); err != nil {
				return err
			}
		}
		sum, ok := live[n.Path]
		delete(live, n.Path)
		switch {
		case ok && sum == sha256.Sum256(n.Data):
			cnt.same++
			return nil
		case ok:
			cnt.changed++
			if dryRun {
				fmt.Fprintf(out, "~ %s\n", n.Path)
			}
		default:
			cnt.added++
			if dryRun {
				fmt.Fprintf(out, "+ %s\n", n.Path)
			}
		}
		if kept += len(n.Path) + len(n.Data); kept > restoreMemory && keep {
			keep = false
			for p := range toWrite {
				toWrite[p] = nil
			}
		}
		if keep && !dryRun {
			toWrite[n.Path] = n.Data
		} else {
			toWrite[n.Path] = nil
		}
		return nil
	})
	if err != nil {
		return cnt, fmt.Errorf("%w; nothing written", err)
	}
	if root != nil && root.Sum() != c.last().Root {
		return cnt, fmt.Errorf("backup %s: its content does not match its manifest's root; nothing written", c.last().ID)
	}
	// Deletes first, so that a leaf may replace a directory of the same
	// name and the other way round.
	for _, p := range slices.Sorted(maps.Keys(live)) {
		cnt.deleted++
		if dryRun {
			fmt.Fprintf(out, "- %s\n", p)
		}
		writes = append(writes, &repldspb.Write{Path: p, Delete: true})
		if b.add(0) {
			if err := send(); err != nil {
				return cnt, err
			}
		}
	}
	if err := send(); err != nil {
		return cnt, err
	}
	if dryRun || len(toWrite) == 0 {
		return cnt, nil
	}
	put := func(p string, data []byte) error {
		writes = append(writes, &repldspb.Write{Path: p, Data: data})
		if b.add(len(data)) {
			return send()
		}
		return nil
	}
	if keep {
		for _, p := range slices.Sorted(maps.Keys(toWrite)) {
			if err := put(p, toWrite[p]); err != nil {
				return cnt, err
			}
		}
		return cnt, send()
	}
	// Second pass: the writes, streamed.
	err = c.nodes(ctx, func(n store.Node) error {
		if _, ok := toWrite[n.Path]; !ok || n.Deleted {
			return nil
		}
		return put(n.Path, n.Data)
	})
	if err != nil {
		return cnt, err
	}
	return cnt, send()
}

// merge applies the backup's nodes with their own versions: only what is
// older or missing is replaced, nothing is deleted. apply imports one
// batch and returns how many nodes changed; it is called from up to
// importsInFlight goroutines at once, and must not keep the batch. With
// skipReserved, nodes of the reserved namespace are left out and counted
// as skipped.
func merge(ctx context.Context, c *chosen, apply func(context.Context, []store.Node) (int, error), skipReserved bool, progress io.Writer) (restoreCounts, error) {
	var cnt restoreCounts
	var mu sync.Mutex // guards cnt.changed and cnt.same
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(importsInFlight)
	var batch []store.Node
	b := &batcher{}
	sent, lastReport := uint64(0), time.Now()
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		nodes := batch
		batch, b.n, b.bytes = nil, 0, 0
		g.Go(func() error {
			n, err := apply(gctx, nodes)
			if err != nil {
				return err
			}
			mu.Lock()
			cnt.changed += uint64(n)
			cnt.same += uint64(len(nodes) - n)
			mu.Unlock()
			return nil
		})
		if sent += uint64(len(nodes)); progress != nil && time.Since(lastReport) > time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "restore: %d nodes sent\n", sent)
		}
		return gctx.Err()
	}
	err := c.nodes(gctx, func(n store.Node) error {
		if skipReserved && nodepath.IsReserved(n.Path) {
			cnt.skipped++
			return nil
		}
		batch = append(batch, n)
		if b.add(len(n.Data)) {
			return send()
		}
		return nil
	})
	if err == nil {
		err = send()
	}
	if werr := g.Wait(); werr != nil {
		err = werr
	}
	return cnt, err
}

// memberClient is a client of one member of the cluster.
type memberClient struct {
	name   string
	client repldspb.RepldsClient
}

// importAll returns an apply function that imports each batch into every
// server of clients at once (servers do not push imported nodes to each
// other: they would get them by sync, which is slow for a whole cluster's
// worth) and reports the changes of the first that took it. A server that
// fails is reported once and left to sync, as long as one takes the batch.
func importAll(clients []memberClient, warn io.Writer) func(context.Context, []store.Node) (int, error) {
	var warned sync.Map
	return func(ctx context.Context, nodes []store.Node) (int, error) {
		req := &repldspb.ImportRequest{Nodes: wire.NodesToProto(nodes)}
		changed := make([]int, len(clients))
		errs := make([]error, len(clients))
		var wg sync.WaitGroup
		for i, mc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := mc.client.Import(ctx, req)
				if err != nil {
					errs[i] = err
					return
				}
				changed[i] = int(resp.Changed)
			}()
		}
		wg.Wait()
		took := -1
		for i, err := range errs {
			if err == nil && took < 0 {
				took = i
			}
			if err != nil && len(clients) > 1 {
				if _, dup := warned.LoadOrStore(clients[i].name, true); !dup {
					fmt.Fprintf(warn, "restore: server %s refused or failed an import (%v); it will get the nodes by sync\n", clients[i].name, err)
				}
			}
		}
		if took < 0 {
			return 0, errs[0]
		}
		return changed[took], nil
	}
}

// members returns clients of every alive member of rc's cluster, as its
// Status lists them (rc stands for the member that answered), connected
// with the client's own settings, and a function that closes them.
func members(ctx context.Context, cf *clientFlags, rc repldspb.RepldsClient, warn io.Writer) ([]memberClient, func(), error) {
	st, err := rc.Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return nil, nil, err
	}
	out := []memberClient{{name: st.Name, client: rc}}
	opts, err := cf.dialOptions()
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for _, m := range st.Members {
		if m.Name == st.Name || m.State != "alive" || m.Addr == "" {
			continue
		}
		conn, err := grpc.NewClient(m.Addr, opts...)
		if err != nil {
			fmt.Fprintf(warn, "restore: member %s at %s: %v; it will get the nodes by sync\n", m.Name, m.Addr, err)
			continue
		}
		conns = append(conns, conn)
		out = append(out, memberClient{name: m.Name, client: repldspb.NewRepldsClient(conn)})
	}
	return out, closeAll, nil
}

// newRestoreCmd restores a backup into a cluster as a client.
func newRestoreCmd() *cobra.Command {
	var cf clientFlags
	var rf restoreFlags
	var dryRun, mergeMode bool
	cmd := &cobra.Command{
		Use:   "restore --from=URL --job=NAME [--id=ID | --at=TIME] [--prefix=/sub] [--to=/other] [--merge] [--dry-run]",
		Short: "Restore a backup into the cluster (rolls the subtree back; --merge rebuilds without overwriting newer nodes)",
		Long: `Restore a backup, under this client's ACLs (write on the destination).

By default the subtree is rolled back to the backup: its nodes are written as
new writes (so they win and pulling hosts fire their triggers), live nodes
that did not exist at the backup are deleted, identical ones are left alone.
With --merge, nodes keep their original versions and replace only what is
older or missing; nothing is deleted: this rebuilds a lost cluster without
overwriting anything newer. The chain is verified (checksums, and the content
root where the data is readable) before anything is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			// A rollback checks the backup in its first pass, before it
			// writes; a merge writes as it reads, so it verifies first.
			c, err := rf.choose(ctx, mergeMode)
			if err != nil {
				return err
			}
			last := c.last()
			fmt.Fprintf(cmd.ErrOrStderr(), "restore: backup %s (%s, %s, chain of %d) of %s into %s\n",
				last.ID, last.Kind, last.Time.Format(time.RFC3339), len(c.chain), nodepath.Quote(c.src), nodepath.Quote(c.dst))
			var cnt restoreCounts
			err = cf.call(ctx, func(ctx context.Context, rc repldspb.RepldsClient) error {
				if mergeMode {
					if dryRun {
						return errors.New("--dry-run shows what a rollback would change; with --merge nothing newer is ever replaced")
					}
					clients, closeAll, err := members(ctx, &cf, rc, cmd.ErrOrStderr())
					if err != nil {
						return err
					}
					defer closeAll()
					fmt.Fprintf(cmd.ErrOrStderr(), "restore: importing into %d servers at once\n", len(clients))
					cnt, err = merge(ctx, c, importAll(clients, cmd.ErrOrStderr()), true, cmd.ErrOrStderr())
					return err
				}
				cnt, err = rollback(ctx, cmd, c, rc, dryRun)
				return err
			})
			if err != nil {
				return err
			}
			verb := "restored"
			if dryRun {
				verb = "would restore"
			}
			if mergeMode {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %d nodes changed, %d already as new or newer, %d in /_replds left out\n", verb, last.ID, cnt.changed, cnt.same, cnt.skipped)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %d added, %d changed, %d deleted, %d unchanged\n", verb, last.ID, cnt.added, cnt.changed, cnt.deleted, cnt.same)
			}
			return nil
		},
	}
	rf.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change (+ added, ~ changed, - deleted) and change nothing")
	cmd.Flags().BoolVar(&mergeMode, "merge", false, "keep original versions; replace only older or missing nodes; delete nothing")
	cf.registerWithTimeouts(cmd)
	return cmd
}
