package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	repldspb "github.com/replds/replds/proto"
)

// Sizes of the resume and restore rows.
const (
	// resumeChanges is how many nodes change between a Watch's bookmark
	// and its resume.
	resumeChanges = 100
	// restoreShare is the share of nodes (1 in restoreShare) that differ
	// between a restored server and the cluster: 10k of 1M.
	restoreShare = 100
)

// seamsPhase runs the resume and restore rows on a fresh cluster of two
// servers holding --seams-nodes nodes, then the backup rows, which back
// that cluster up (see backupRows).
func (b *bench) seamsPhase(ctx context.Context) error {
	backups := b.row("backup") || b.row("restore-backup")
	if !b.row("resume") && !b.row("restore") && !backups {
		return nil
	}
	n := b.opts.seamsNodes
	b.logf("resume/restore/backup phase: 2 servers, %d nodes of %d bytes", n, b.opts.size)
	c, err := b.newCluster(ctx, "seams", 2)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.waitMembers(ctx, 2, time.Minute); err != nil {
		return err
	}
	if err := b.loadAndConverge(ctx, c, n); err != nil {
		return err
	}
	var errs []error
	if b.row("resume") {
		if err := b.resumeRow(ctx, c, n); err != nil {
			errs = append(errs, fmt.Errorf("resume row: %w", err))
		}
	}
	if b.row("restore") && ctx.Err() == nil {
		if err := b.restoreRow(ctx, c, n); err != nil {
			errs = append(errs, fmt.Errorf("restore row: %w", err))
		}
	}
	if backups && ctx.Err() == nil {
		if err := b.backupRows(ctx, c, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// watchRead is what a Watch stream sent until the end of its replay.
type watchRead struct {
	nodes int
	bytes int64 // protobuf size of the messages
	token *repldspb.Vector
	took  time.Duration
}

// watchUntilSynced opens a Watch of prefix on s from token and reads it
// until the bookmark that ends its replay.
func watchUntilSynced(ctx context.Context, s *server, prefix string, token *repldspb.Vector) (watchRead, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	st, err := s.client.Watch(ctx, &repldspb.WatchRequest{Prefix: prefix, Token: token})
	if err != nil {
		return watchRead{}, err
	}
	var r watchRead
	for {
		msg, err := st.Recv()
		if err == io.EOF {
			return r, errors.New("watch ended before its replay did")
		}
		if err != nil {
			return r, err
		}
		r.nodes += len(msg.Nodes)
		r.bytes += int64(proto.Size(msg))
		if msg.Synced {
			r.token, r.took = msg.Bookmark, time.Since(start)
			return r, nil
		}
	}
}

// resumeRow times a Watch of the data prefix resumed from a bookmark
// after resumeChanges nodes changed, against a Watch from no bookmark
// (the full replay a resume would cost if it scanned what it sends).
func (b *bench) resumeRow(ctx context.Context, c *cluster, n int) error {
	s := c.servers[1]
	full, err := watchUntilSynced(ctx, s, dataPrefix, nil)
	if err != nil {
		return err
	}
	if full.nodes < n {
		return fmt.Errorf("full replay sent %d nodes, want %d", full.nodes, n)
	}
	if err := rewrite(ctx, c.servers[0], dataPrefix, n, resumeChanges, b.opts.size, 1); err != nil {
		return err
	}
	if err := c.waitConverged(ctx, uint64(n), convergeTimeout); err != nil {
		return err
	}
	resumed, err := watchUntilSynced(ctx, s, dataPrefix, full.token)
	if err != nil {
		return err
	}
	if resumed.nodes != resumeChanges {
		return fmt.Errorf("resume sent %d nodes, want %d", resumed.nodes, resumeChanges)
	}
	b.logf("resume: %d changed nodes in %v, %s; full replay %d nodes in %v, %s",
		resumed.nodes, resumed.took.Round(time.Microsecond), bytesText(resumed.bytes),
		full.nodes, full.took.Round(time.Millisecond), bytesText(full.bytes))
	b.res.add(&metric{ID: "resume/time", Row: "resume", Order: 90, Nodes: n,
		Name:  fmt.Sprintf("Watch resumed after %d changes in %s nodes: until synced", resumeChanges, count(n)),
		Value: ms(resumed.took), Unit: "ms",
		Note: fmt.Sprintf("a Watch from no bookmark: %.0f ms", ms(full.took))})
	b.res.add(&metric{ID: "resume/bytes", Row: "resume", Order: 91, Nodes: n,
		Name:  fmt.Sprintf("Watch resumed after %d changes in %s nodes: bytes sent", resumeChanges, count(n)),
		Value: float64(resumed.bytes), Unit: "B",
		Note: fmt.Sprintf("protobuf message bytes; a Watch from no bookmark: %s", bytesText(full.bytes))})
	return nil
}

// restoreRow restores the second server from a copy of its data directory
// taken before n/restoreShare nodes changed, and times until the two
// servers agree again, counting the bytes between them.
func (b *bench) restoreRow(ctx context.Context, c *cluster, n int) error {
	s := c.servers[1]
	backup := s.dataDir + ".old"
	if err := c.restartWith(ctx, s, func() error { return copyDir(s.dataDir, backup) }); err != nil {
		return err
	}
	differ := max(1, n/restoreShare)
	if err := rewrite(ctx, c.servers[0], dataPrefix, n, differ, b.opts.size, 2); err != nil {
		return err
	}
	st, err := c.servers[0].client.Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return err
	}
	if err := c.waitConverged(ctx, st.Nodes, convergeTimeout); err != nil {
		return err
	}
	var start time.Time
	var before traffic
	err = c.restartWith(ctx, s, func() error {
		if err := os.RemoveAll(s.dataDir); err != nil {
			return err
		}
		if err := os.Rename(backup, s.dataDir); err != nil {
			return err
		}
		before, start = c.traffic(), time.Now()
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.waitConverged(ctx, st.Nodes, convergeTimeout); err != nil {
		return err
	}
	took := time.Since(start)
	d := c.traffic().sub(before)
	b.logf("restore: server restored %d changes behind converged %v after its restart began; between servers: %s",
		differ, took.Round(time.Millisecond), d.summary())
	b.res.add(&metric{ID: "restore/time", Row: "restore", Order: 92, Nodes: n,
		Name:  fmt.Sprintf("server restored from a copy %s changes behind, of %s nodes: converged", count(differ), count(n)),
		Value: took.Seconds(), Unit: "s",
		Note: "from the restart of the restored server"})
	b.res.add(&metric{ID: "restore/bytes", Row: "restore", Order: 93, Nodes: n,
		Name:  fmt.Sprintf("server restored from a copy %s changes behind, of %s nodes: bytes between servers", count(differ), count(n)),
		Value: float64(d.total), Unit: "B",
		Note: d.summary()})
	return nil
}

// rewrite gives k of the n generated nodes under prefix on s new data of
// generation gen, spread over the whole tree, in one Store call per
// loadBatch(size) nodes.
func rewrite(ctx context.Context, s *server, prefix string, n, k, size, gen int) error {
	step := max(1, n/k)
	per := loadBatch(size)
	req := &repldspb.StoreRequest{}
	flush := func() error {
		if len(req.Writes) == 0 {
			return nil
		}
		_, err := s.client.Store(ctx, req)
		req = &repldspb.StoreRequest{}
		return err
	}
	for j := range k {
		i := (j * step) % n
		d := make([]byte, size)
		nodeData(d, i, gen)
		req.Writes = append(req.Writes, &repldspb.Write{Path: nodePath(prefix, i), Data: d})
		if len(req.Writes) >= per {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// copyDir copies the regular files of the tree at src to dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(path, to)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
