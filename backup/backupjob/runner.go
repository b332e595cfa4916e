package backupjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// runner is one instance of a backup job on its runner.
type runner struct {
	k      *kind
	job    jobs.Job
	p      plan
	tgt    target.Target
	st     jobs.Status
	detail Detail
	log    *slog.Logger
	// retryAt, when set, is when a failed run is tried again.
	retryAt time.Time
	// lastRun is when the last run (of this or an earlier runner) began;
	// skippedThrough, up to when due times were counted as skipped.
	lastRun, skippedThrough time.Time
}

func (r *runner) now() time.Time { return r.k.cfg.Now().UTC() }

func (r *runner) publish(ctx context.Context) error {
	d, err := json.Marshal(r.detail)
	if err != nil {
		return err
	}
	r.st.Detail = d
	return r.job.Publish(ctx, r.st)
}

// republish is the longest a runner goes without publishing its status.
const republish = time.Minute

// what a due run does.
const (
	runAuto        = ""
	runFull        = backup.KindFull
	runIncremental = backup.KindIncremental
	runVerify      = "verify"
)

// loop waits for the next due run, a request or the end of ctx, and runs.
func (r *runner) loop(ctx context.Context) error {
	if r.st.Last != nil {
		r.lastRun = r.st.Last.Start
	}
	var lastVerify time.Time
	if r.detail.Verified != nil {
		lastVerify = r.detail.Verified.Time
	}
	for {
		now := r.now()
		due := r.p.schedule.Next(r.lastRun)
		if r.lastRun.IsZero() {
			due = now // never ran: a first full at once
		}
		if !r.retryAt.IsZero() && r.retryAt.Before(due) {
			due = r.retryAt
		}
		verifyDue := time.Time{}
		if !r.p.verify.IsZero() {
			verifyDue = r.p.verify.Next(lastVerify)
			if lastVerify.IsZero() {
				verifyDue = r.p.verify.Next(now)
			}
		}
		r.st.State = jobs.StateIdle
		if r.st.Error != "" {
			r.st.State = jobs.StateFailed
		}
		r.st.Next = due
		if err := r.publish(ctx); err != nil && ctx.Err() != nil {
			return nil
		}
		wake := due
		if !verifyDue.IsZero() && verifyDue.Before(wake) {
			wake = verifyDue
		}
		what := runAuto
		// Wake at least every republish: the status node then names this
		// runner again should a brief second runner have overwritten it.
		refresh := false
		if wake.Sub(now) > republish {
			wake, refresh = now.Add(republish), true
		}
		timer := time.NewTimer(max(0, wake.Sub(now)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case req := <-r.job.Requests:
			timer.Stop()
			if req.Version <= r.detail.LastRequest {
				continue // handled by this job already (an earlier runner)
			}
			r.detail.LastRequest = req.Version
			q, err := ParseRequest(req.Data)
			if err != nil {
				r.log.Warn("request ignored", "err", err)
				continue
			}
			what = q.Run
			if what == runAuto {
				what = runIncremental
			}
		case <-timer.C:
			if refresh {
				continue
			}
			if !verifyDue.IsZero() && !verifyDue.After(r.now()) && (due.After(r.now()) || verifyDue.Before(due)) {
				what = runVerify
			}
		}
		if what == runVerify {
			lastVerify = r.now()
			r.verify(ctx)
		} else {
			r.backup(ctx, what)
		}
		if ctx.Err() != nil {
			return nil
		}
		r.countSkips()
	}
}

// countSkips counts the runs that fell due, and the requests that came,
// while a run was in progress: they are skipped, not queued.
func (r *runner) countSkips() {
	now := r.now()
	if !r.lastRun.IsZero() {
		t := r.p.schedule.Next(r.p.schedule.Next(r.lastRun))
		if after := r.p.schedule.Next(r.skippedThrough); !r.skippedThrough.IsZero() && after.After(t) {
			t = after
		}
		for ; !t.After(now); t = r.p.schedule.Next(t) {
			r.skip()
		}
		r.skippedThrough = now // a due time is counted once
	}
	for {
		select {
		case req := <-r.job.Requests:
			if req.Version > r.detail.LastRequest {
				r.detail.LastRequest = req.Version
				r.skip()
			}
		default:
			return
		}
	}
}

func (r *runner) skip() {
	r.st.Skips++
	if r.k.cfg.Metrics != nil {
		r.k.cfg.Metrics.Skip(r.job.Name)
	}
	r.log.Warn("backup run skipped: the previous one was still running")
}

// begin records the start of a run in the status.
func (r *runner) begin(ctx context.Context, kind string) *jobs.Run {
	run := &jobs.Run{Kind: kind, Start: r.now()}
	r.st.State, r.st.Current = jobs.StateRunning, run
	_ = r.publish(ctx)
	return run
}

// end records the end of a run.
func (r *runner) end(ctx context.Context, run *jobs.Run, err error) {
	run.End = r.now()
	run.Duration = run.End.Sub(run.Start).Round(time.Millisecond).String()
	r.st.Current, r.st.Last = nil, run
	r.st.State = jobs.StateIdle
	r.st.Runs++
	if err != nil {
		run.Error = err.Error()
		r.st.Failures++
		r.st.Error = err.Error()
		r.st.State = jobs.StateFailed
		if run.Kind != runVerify {
			r.retryAt = r.now().Add(r.k.cfg.RetryWait)
		}
		r.log.Error("backup run failed", "kind", run.Kind, "err", err)
	} else {
		r.st.Error, r.retryAt = "", time.Time{}
		r.st.LastSuccess = run.End
		r.log.Info("backup run done", "kind", run.Kind, "id", run.ID, "nodes", run.Nodes, "bytes", run.Bytes, "took", run.Duration, "note", run.Note)
	}
	if r.k.cfg.Metrics != nil {
		r.k.cfg.Metrics.Run(r.job.Name, run.Kind, run.End.Sub(run.Start), run.Nodes, run.Bytes, err)
	}
	// The status must say how the run ended even when ctx is ending.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = r.publish(pctx)
}

// backup makes one backup: full or incremental as asked, or as due.
func (r *runner) backup(ctx context.Context, what string) {
	r.lastRun = r.now()
	all, err := backup.List(ctx, r.tgt, r.job.Name)
	if err != nil {
		run := r.begin(ctx, "backup")
		r.end(ctx, run, err)
		return
	}
	kind, parent := r.choose(all, what)
	run := r.begin(ctx, kind)
	var m backup.Manifest
	if kind == runFull {
		m, err = r.full(ctx)
	} else {
		m, err = r.incremental(ctx, parent)
	}
	if ctx.Err() != nil {
		return // stopped here; the next runner starts over
	}
	run.ID, run.Nodes, run.Bytes = m.ID, m.Nodes, m.Bytes
	if err == nil && m.ID == "" {
		run.Note = "no changes since " + parent.ID
	}
	if err == nil && m.ID != "" {
		r.detail.Latest = m.ID
		if kind == runFull {
			r.detail.LastFull = m.ID
		}
		deleted, rerr := backup.Retain(ctx, r.tgt, r.job.Name, r.p.policy, r.now(), r.k.cfg.Grace)
		r.detail.Deleted += uint64(len(deleted))
		if rerr != nil {
			err = fmt.Errorf("retention: %w", rerr)
		} else if len(deleted) > 0 {
			r.log.Info("retention removed backups", "ids", deleted)
		}
	}
	r.end(ctx, run, err)
}

// choose decides a run's kind and, for an incremental, its parent.
func (r *runner) choose(all []backup.Manifest, what string) (kind string, parent backup.Manifest) {
	var lastFull *backup.Manifest
	incrementals := 0
	for i := range all {
		if all[i].Kind == backup.KindFull {
			lastFull, incrementals = &all[i], 0
		} else if lastFull != nil {
			incrementals++
		}
	}
	if what == runFull || lastFull == nil {
		return runFull, parent
	}
	// The newest backup must descend from the newest full (the chain is
	// whole) and share this prefix.
	newest := all[len(all)-1]
	if _, err := backup.Chain(all, newest.ID); err != nil || newest.Prefix != r.p.Prefix {
		return runFull, parent
	}
	if what == runAuto {
		switch {
		case r.p.fullEvery < 0:
			return runFull, parent
		case r.p.fullEvery > 0 && incrementals >= r.p.fullEvery:
			return runFull, parent
		case r.p.fullEvery == 0 && !r.p.full.IsZero() && !r.p.full.Next(lastFull.Time).After(r.now()):
			return runFull, parent
		}
	}
	return runIncremental, newest
}

// abortWithin bounds the cleanup of a failed or stopped backup: it runs
// after the run's context ended, and a stopping instance's cleanup holds
// up the job's next instance.
const abortWithin = time.Minute

// abort removes what w wrote, within abortWithin; what is left is
// removed by retention as an incomplete leftover.
func abort(ctx context.Context, w *backup.Writer) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortWithin)
	defer cancel()
	return w.Abort(ctx)
}

// keep leaves out what the spec excludes.
func (r *runner) keep(path string, _ store.Meta) bool {
	for _, e := range r.p.Exclude {
		if nodepath.Under(path, e) {
			return false
		}
	}
	return true
}

func (r *runner) writer(ctx context.Context, kind, parent string) (*backup.Writer, error) {
	return backup.NewWriter(ctx, r.tgt, backup.WriterOptions{
		Job:        r.job.Name,
		Kind:       kind,
		Parent:     parent,
		Prefix:     r.p.Prefix,
		Exclude:    r.p.Exclude,
		Recipients: r.p.EncryptTo,
		Runner:     r.job.Runner,
		Now:        r.k.cfg.Now,
	})
}

// full writes a full backup: a snapshot of the prefix, streamed.
func (r *runner) full(ctx context.Context) (backup.Manifest, error) {
	w, err := r.writer(ctx, backup.KindFull, "")
	if err != nil {
		return backup.Manifest{}, err
	}
	root := backup.NewRoot()
	var vec store.Vector
	// The data is borrowed from the read transaction: the writer
	// compresses it as it comes, so a full backup allocates nothing per
	// byte of data.
	err = r.k.cfg.Store.Snapshot(ctx, store.ScanOptions{Prefix: r.p.Prefix, Keep: r.keep, Borrow: true}, func(v store.Vector, page []store.Node) error {
		vec = v
		for _, n := range page {
			if !n.Deleted {
				if err := root.Add(n.Path, n.Version, n.Origin, n.Seq); err != nil {
					return err
				}
			}
			if err := w.Add(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return backup.Manifest{}, errors.Join(err, abort(ctx, w))
	}
	m, err := w.Commit(ctx, vec, root.Sum(), "")
	if err != nil {
		return m, errors.Join(err, abort(ctx, w))
	}
	return m, nil
}

// incremental writes the winners the parent's vector lacks, or nothing
// (a zero Manifest) when there are none. When this server's state does
// not cover the parent's (a new runner behind the old one), it makes a
// full backup instead, so that the chain's content stays exact.
func (r *runner) incremental(ctx context.Context, parent backup.Manifest) (backup.Manifest, error) {
	from, err := backup.ToVector(parent.Vector)
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("parent %s: %w", parent.ID, err)
	}
	var w *backup.Writer
	root := backup.NewRoot()
	var vec store.Vector
	behind := false
	var rootErr error
	err = r.k.cfg.Store.Delta(ctx, store.DeltaOptions{
		Prefix: r.p.Prefix,
		From:   from,
		Keep:   r.keep,
		Walk: func(path string, m store.Meta) {
			if !m.Deleted && rootErr == nil {
				rootErr = root.Add(path, m.Version, m.Origin, m.Seq)
			}
		},
	}, func(v store.Vector, page []store.Node) error {
		vec = v
		for o, s := range from {
			if v[o] < s {
				behind = true
				return nil
			}
		}
		if rootErr != nil {
			return rootErr
		}
		if len(page) == 0 {
			return nil
		}
		if w == nil {
			var err error
			if w, err = r.writer(ctx, backup.KindIncremental, parent.ID); err != nil {
				return err
			}
		}
		for _, n := range page {
			if err := w.Add(n); err != nil {
				return err
			}
		}
		return nil
	})
	if behind || errors.Is(err, store.ErrCollected) {
		if w != nil {
			_ = abort(ctx, w)
		}
		r.log.Info("an incremental could miss deletes or writes the last backup holds (this server is behind it, or collected tombstones since): making a full backup", "parent", parent.ID)
		return r.full(ctx)
	}
	if err != nil {
		if w != nil {
			err = errors.Join(err, abort(ctx, w))
		}
		return backup.Manifest{}, err
	}
	if w == nil {
		return backup.Manifest{}, nil
	}
	m, err := w.Commit(ctx, vec, root.Sum(), "")
	if err != nil {
		return m, errors.Join(err, abort(ctx, w))
	}
	return m, nil
}

// verify checks the newest backup's chain: every file's checksum, and the
// content root where the data is readable here (not encrypted: the
// servers never hold the key).
func (r *runner) verify(ctx context.Context) {
	run := r.begin(ctx, runVerify)
	all, err := backup.List(ctx, r.tgt, r.job.Name)
	var v backup.Verification
	if err == nil {
		var chain []backup.Manifest
		if chain, err = backup.Latest(all); err == nil {
			run.ID = chain[len(chain)-1].ID
			if v, err = backup.Verify(ctx, r.tgt, chain, nil); err == nil {
				err = backup.WriteVerification(ctx, r.tgt, chain[len(chain)-1], v)
				r.detail.Verified, r.detail.VerifiedID = &v, run.ID
				run.Nodes = v.Nodes
				if !v.OK {
					err = fmt.Errorf("backup %s FAILED verification: %s", run.ID, v.Error)
				}
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	r.end(ctx, run, err)
}
