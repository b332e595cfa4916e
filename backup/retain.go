package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
)

// Policy says which backups of a job Retain keeps. The zero Policy keeps
// everything.
type Policy struct {
	// Fulls keeps the newest Fulls chains (a full and the incrementals
	// that descend from it); 0 = no limit by count.
	Fulls int
	// Within keeps every chain with a backup taken within Within of now;
	// 0 = no limit by age.
	Within time.Duration
}

// ParseWithin parses a retention age: a whole number and a unit, m
// (minutes), h (hours), d (days) or w (weeks): "90m", "12h", "30d", "2w".
func ParseWithin(s string) (time.Duration, error) {
	bad := fmt.Errorf("%w: retention %q: want a whole number and a unit: 90m, 12h, 30d or 2w", ErrInvalid, s)
	if len(s) < 2 {
		return 0, bad
	}
	units := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	unit, ok := units[s[len(s)-1]]
	if !ok {
		return 0, bad
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil || strings.HasPrefix(s, "+") {
		return 0, bad
	}
	if n > uint64(math.MaxInt64/unit) {
		return 0, fmt.Errorf("%w: retention %q: too long", ErrInvalid, s)
	}
	return time.Duration(n) * unit, nil
}

// chainGroup is a full (or, when its ancestry is missing, the oldest
// backup found) and every backup that descends from it.
type chainGroup struct {
	members []*Manifest
	full    bool
	newest  *Manifest
}

// groupChains groups backups by the topmost ancestor found, newest group
// (by its newest member) first.
func groupChains(all []Manifest) []*chainGroup {
	byID := make(map[string]*Manifest, len(all))
	for i := range all {
		byID[all[i].ID] = &all[i]
	}
	top := func(m *Manifest) *Manifest {
		for steps := 0; m.Kind != KindFull && steps <= len(all); steps++ {
			p := byID[m.Parent]
			if p == nil {
				break
			}
			m = p
		}
		return m
	}
	groups := make(map[string]*chainGroup)
	var out []*chainGroup
	for i := range all {
		m := &all[i]
		r := top(m)
		g := groups[r.ID]
		if g == nil {
			g = &chainGroup{full: r.Kind == KindFull}
			groups[r.ID] = g
			out = append(out, g)
		}
		g.members = append(g.members, m)
		if g.newest == nil || newer(m, g.newest) {
			g.newest = m
		}
	}
	slices.SortFunc(out, func(a, b *chainGroup) int {
		if newer(a.newest, b.newest) {
			return -1
		}
		return 1
	})
	return out
}

func newer(a, b *Manifest) bool {
	return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.ID, b.ID)) > 0
}

// Retain applies p to the backups of job in t at time now, and deletes
// the incomplete leftovers (files without a manifest) whose newest object
// and ID are older than grace — a backup being written has no manifest
// either, so grace must exceed the time a run takes to store one file.
//
// Chains are kept whole: the newest p.Fulls chains if set, every chain
// with a backup within p.Within of now if set (the union if both are), and
// always the newest chain that starts with a full. Incrementals whose
// ancestry is broken (no full) are kept only by Within. A backup is
// deleted manifest first, so that a half-deleted backup is an incomplete
// leftover, never listed as complete. Retain returns the directories
// ("JOB/ID") it deleted, sorted, also when it fails part way.
func Retain(ctx context.Context, t target.Target, job string, p Policy, now time.Time, grace time.Duration) (deleted []string, err error) {
	if err := jobs.ValidateName(job); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if p.Fulls < 0 || p.Within < 0 || grace < 0 {
		return nil, fmt.Errorf("%w: retention: negative fulls, within or grace", ErrInvalid)
	}
	dirs, err := scan(ctx, t, job)
	if err != nil {
		return nil, err
	}
	all, err := readManifests(ctx, t, dirs)
	if err != nil {
		return nil, err
	}
	drop := make(map[string]bool) // IDs of backups to delete
	if p.Fulls > 0 || p.Within > 0 {
		fulls, newestKept := 0, false
		for _, g := range groupChains(all) {
			keep := false
			if g.full {
				fulls++
				keep = !newestKept || p.Fulls > 0 && fulls <= p.Fulls
				newestKept = true
			}
			if p.Within > 0 {
				for _, m := range g.members {
					if now.Sub(m.Time) <= p.Within {
						keep = true
					}
				}
			}
			if !keep {
				for _, m := range g.members {
					drop[m.ID] = true
				}
			}
		}
	}
	for _, d := range dirs {
		switch {
		case d.manifest && drop[d.id]:
			err = deleteDir(ctx, t, d)
		case !d.manifest && leftoverExpired(d, now, grace):
			err = deleteDir(ctx, t, d)
		default:
			continue
		}
		if err != nil {
			return deleted, err
		}
		deleted = append(deleted, d.dir())
	}
	return deleted, nil
}

func leftoverExpired(d *dirInfo, now time.Time, grace time.Duration) bool {
	last := d.modTime
	if idTime, err := ParseID(d.id); err == nil && idTime.After(last) {
		last = idTime
	}
	return now.Sub(last) > grace
}

// deleteDir deletes the objects of a backup directory, its manifest first.
func deleteDir(ctx context.Context, t target.Target, d *dirInfo) error {
	if d.manifest {
		key := d.dir() + "/" + manifestName
		if err := t.Delete(ctx, key); err != nil {
			return fmt.Errorf("backup: delete %s: %w", key, err)
		}
	}
	var errs []error
	for _, key := range d.keys {
		if strings.HasSuffix(key, "/"+manifestName) {
			continue
		}
		if err := t.Delete(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
