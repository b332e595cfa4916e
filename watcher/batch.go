package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"replds/nodepath"
	repldspb "replds/proto"
	"replds/triggers"
)

// schedule is when a trigger with a quiescence window is due.
type schedule struct {
	first time.Time // first change not yet handled
	due   time.Time
}

// seal ends the open batch at a bookmark. In one transaction it persists
// the bookmark as the resume token, ends a full resync when endFull is set,
// and, if the batch changed anything, numbers it, records snap (the staging
// snapshot of atomic mode, 0 = none) as the sealed snapshot, and hands its
// changes to the pending set of every current trigger whose path covers
// them. It returns the number of changed paths and the triggers that got
// some. A bookmark that changes nothing (a heartbeat) writes nothing.
func (a *applier) seal(bookmark *repldspb.Vector, endFull bool, snap uint64) (changed int, touched map[string]bool, err error) {
	var list []triggers.Trigger
	if a.trig != nil {
		list = a.trig.List()
	}
	token, err := proto.Marshal(bookmark)
	if err != nil {
		return 0, nil, fmt.Errorf("encode token: %w", err)
	}
	touched = map[string]bool{}
	if !endFull {
		idle := false
		a.db.View(func(tx *bolt.Tx) error {
			k, _ := tx.Bucket(bucketBatch).Cursor().First()
			idle = k == nil && bytes.Equal(tx.Bucket(bucketMeta).Get(keyToken), token)
			return nil
		})
		if idle {
			return 0, touched, nil
		}
	}
	err = a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyToken, token); err != nil {
			return err
		}
		if endFull {
			if err := clearBucket(tx, bucketSeen); err != nil {
				return err
			}
			if err := meta.Delete(keyFull); err != nil {
				return err
			}
		}
		type entry struct {
			path string
			c    change
		}
		var net []entry
		if err := tx.Bucket(bucketBatch).ForEach(func(k, v []byte) error {
			if c := decodeChange(v); !c.none() {
				net = append(net, entry{string(k), c})
			}
			return nil
		}); err != nil {
			return err
		}
		if err := clearBucket(tx, bucketBatch); err != nil {
			return err
		}
		changed = len(net)
		if changed == 0 {
			return nil
		}
		if err := meta.Put(keyBatch, u64(getU64(meta, keyBatch)+1)); err != nil {
			return err
		}
		if snap != 0 {
			if err := meta.Put(keySnap, u64(snap)); err != nil {
				return err
			}
		}
		pending := tx.Bucket(bucketPending)
		for _, t := range list {
			var tb *bolt.Bucket
			for _, e := range net {
				if !nodepath.Under(e.path, t.Path) {
					continue
				}
				if tb == nil {
					var err error
					if tb, err = pending.CreateBucketIfNotExists([]byte(t.Name)); err != nil {
						return err
					}
				}
				c := e.c
				if old := tb.Get([]byte(e.path)); old != nil {
					c = decodeChange(old).then(c)
				}
				var err error
				if c.none() {
					err = tb.Delete([]byte(e.path))
				} else {
					err = tb.Put([]byte(e.path), c.encode())
				}
				if err != nil {
					return err
				}
				touched[t.Name] = true
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("seal batch: %w", err)
	}
	return changed, touched, nil
}

// pendingFor returns the changes trigger name has not handled yet.
func (a *applier) pendingFor(name string) (triggers.Changes, error) {
	c := triggers.Changes{Added: []string{}, Changed: []string{}, Deleted: []string{}}
	err := a.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketPending).Bucket([]byte(name))
		if tb == nil {
			return nil
		}
		return tb.ForEach(func(k, v []byte) error {
			switch ch := decodeChange(v); {
			case !ch.Before && ch.After:
				c.Added = append(c.Added, string(k))
			case ch.Before && ch.After:
				c.Changed = append(c.Changed, string(k))
			case ch.Before && !ch.After:
				c.Deleted = append(c.Deleted, string(k))
			}
			return nil
		})
	})
	return c, err
}

// handled records that trigger name handled everything pending: its
// pending set goes and the current batch number is noted, in one
// transaction.
func (a *applier) handled(name string) error {
	return a.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketPending).DeleteBucket([]byte(name))
		if err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		n := getU64(tx.Bucket(bucketMeta), keyBatch)
		return tx.Bucket(bucketHandled).Put([]byte(name), u64(n))
	})
}

// dropRemoved forgets the pending changes of triggers that no longer exist.
func (a *applier) dropRemoved(list []triggers.Trigger) error {
	current := map[string]bool{}
	for _, t := range list {
		current[t.Name] = true
	}
	var gone [][]byte
	err := a.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEachBucket(func(k []byte) error {
			if !current[string(k)] {
				gone = append(gone, slices.Clone(k))
			}
			return nil
		})
	})
	if err != nil || len(gone) == 0 {
		return err
	}
	return a.db.Update(func(tx *bolt.Tx) error {
		for _, k := range gone {
			a.log.Warn("dropping pending changes of a removed trigger", "trigger", string(k))
			if err := tx.Bucket(bucketPending).DeleteBucket(k); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			if err := tx.Bucket(bucketHandled).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// plan updates the quiescence schedules after a batch: a trigger with a
// wait window and pending changes is due Wait.Min after the last change
// that touched it, but no later than Wait.Max after the first.
func (a *applier) plan(touched map[string]bool) error {
	if a.trig == nil {
		return nil
	}
	now := a.now()
	for _, t := range a.trig.List() {
		if t.Wait.Min <= 0 {
			continue
		}
		s, ok := a.sched[t.Name]
		switch {
		case ok && touched[t.Name]:
			s.due = minTime(now.Add(t.Wait.Min), s.first.Add(t.Wait.Max))
			a.sched[t.Name] = s
		case !ok:
			c, err := a.pendingFor(t.Name)
			if err != nil {
				return err
			}
			if c.Len() > 0 {
				a.sched[t.Name] = schedule{first: now, due: now.Add(t.Wait.Min)}
			}
		}
	}
	return nil
}

// nextDue returns the earliest scheduled run, if any.
func (a *applier) nextDue() (time.Time, bool) {
	var next time.Time
	for _, s := range a.sched {
		if next.IsZero() || s.due.Before(next) {
			next = s.due
		}
	}
	return next, !next.IsZero()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// runTriggers runs, one at a time in list order, every trigger that has
// pending changes and is due: right away without a wait window or with
// force, else once its schedule expired. A trigger that fails keeps its
// changes for the next batch. It returns how many failed; an error only when
// ctx ended or the state could not be updated.
func (a *applier) runTriggers(ctx context.Context, force bool) (failed int, err error) {
	if a.trig == nil {
		return 0, nil
	}
	list := a.trig.List()
	if err := a.dropRemoved(list); err != nil {
		return 0, fmt.Errorf("drop removed triggers: %w", err)
	}
	for _, t := range list {
		c, err := a.pendingFor(t.Name)
		if err != nil {
			return failed, fmt.Errorf("read pending changes: %w", err)
		}
		if c.Len() == 0 {
			delete(a.sched, t.Name)
			continue
		}
		if s, ok := a.sched[t.Name]; !force && t.Wait.Min > 0 && (!ok || a.now().Before(s.due)) {
			continue
		}
		delete(a.sched, t.Name)
		attrs := []any{"trigger", t.Name, "path", t.Path, "added", len(c.Added), "changed", len(c.Changed), "deleted", len(c.Deleted)}
		if a.m.dry {
			a.log.Info("would run trigger", attrs...)
			if err := a.handled(t.Name); err != nil {
				return failed, err
			}
			continue
		}
		start := time.Now()
		err = a.trig.Run(ctx, t, c)
		if ctx.Err() != nil {
			// Shutting down: the changes stay pending for the next start.
			return failed, ctx.Err()
		}
		attrs = append(attrs, "duration", time.Since(start).Round(time.Millisecond))
		if err != nil {
			failed++
			var re *triggers.RunError
			if errors.As(err, &re) {
				attrs = append(attrs, "exit_code", re.ExitCode, "timed_out", re.TimedOut)
			}
			a.log.Warn("trigger failed; will retry with the next batch", append(attrs, "err", err)...)
			continue
		}
		if err := a.handled(t.Name); err != nil {
			return failed, fmt.Errorf("record trigger run: %w", err)
		}
		a.log.Info("trigger ran", attrs...)
	}
	return failed, nil
}
