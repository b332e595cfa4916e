package watcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/replds/replds/triggers"
)

// schedule is when a trigger with a quiescence window is due.
type schedule struct {
	first time.Time // first change not yet handled
	due   time.Time
}

// dropRemoved forgets the pending changes of triggers that no longer exist.
func (a *applier) dropRemoved(list []triggers.Trigger) error {
	names, err := a.st.pendingTriggers()
	if err != nil {
		return err
	}
	var gone []string
	for _, n := range names {
		if !slices.ContainsFunc(list, func(t triggers.Trigger) bool { return t.Name == n }) {
			a.log.Warn("dropping pending changes of a removed trigger", "trigger", n)
			gone = append(gone, n)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return a.st.forgetTriggers(gone)
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
			c, err := a.st.pending(t.Name)
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
		c, err := a.st.pending(t.Name)
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
			if err := a.st.setHandled(t.Name); err != nil {
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
		if err := a.st.setHandled(t.Name); err != nil {
			return failed, fmt.Errorf("record trigger run: %w", err)
		}
		a.log.Info("trigger ran", attrs...)
	}
	return failed, nil
}
