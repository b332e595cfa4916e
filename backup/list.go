package backup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
)

// dirInfo is what a target holds under one backup directory.
type dirInfo struct {
	job, id  string
	keys     []string
	modTime  time.Time // newest object's
	manifest bool
	verify   bool
}

func (d *dirInfo) dir() string { return d.job + "/" + d.id }

// scan lists the backup directories of job ("" = every job) in t, sorted
// by (job, id). Objects that are not JOB/ID/NAME of a valid job name and
// ID are not backups and are ignored.
func scan(ctx context.Context, t target.Target, job string) ([]*dirInfo, error) {
	prefix := ""
	if job != "" {
		if err := jobs.ValidateName(job); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		prefix = job + "/"
	}
	byDir := make(map[string]*dirInfo)
	var dirs []*dirInfo
	err := t.List(ctx, prefix, func(in target.Info) error {
		parts := strings.Split(in.Key, "/")
		if len(parts) != 3 || jobs.ValidateName(parts[0]) != nil {
			return nil
		}
		if _, err := ParseID(parts[1]); err != nil {
			return nil
		}
		dir := parts[0] + "/" + parts[1]
		d := byDir[dir]
		if d == nil {
			d = &dirInfo{job: parts[0], id: parts[1]}
			byDir[dir] = d
			dirs = append(dirs, d)
		}
		d.keys = append(d.keys, in.Key)
		if in.ModTime.After(d.modTime) {
			d.modTime = in.ModTime
		}
		switch parts[2] {
		case manifestName:
			d.manifest = true
		case verifyName:
			d.verify = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", t, err)
	}
	slices.SortFunc(dirs, func(a, b *dirInfo) int {
		return cmp.Or(strings.Compare(a.job, b.job), strings.Compare(a.id, b.id))
	})
	return dirs, nil
}

// List returns the complete backups (those with a manifest) of job in t,
// "" for every job, sorted by (Job, ID), each with its last Verification
// attached if one was recorded. A manifest that cannot be read or does not
// match its directory fails List with an error naming it (ErrCorrupt).
func List(ctx context.Context, t target.Target, job string) ([]Manifest, error) {
	dirs, err := scan(ctx, t, job)
	if err != nil {
		return nil, err
	}
	return readManifests(ctx, t, dirs)
}

func readManifests(ctx context.Context, t target.Target, dirs []*dirInfo) ([]Manifest, error) {
	var all []Manifest
	for _, d := range dirs {
		if !d.manifest {
			continue
		}
		key := d.dir() + "/" + manifestName
		var m Manifest
		if err := readJSON(ctx, t, key, &m); err != nil {
			return nil, err
		}
		if m.Job != d.job || m.ID != d.id {
			return nil, fmt.Errorf("backup: %s: names backup %s/%s: %w", key, m.Job, m.ID, ErrCorrupt)
		}
		if err := m.validate(); err != nil {
			return nil, fmt.Errorf("backup: %s: %v: %w", key, err, ErrCorrupt)
		}
		m.Verified = nil
		if d.verify {
			var v Verification
			err := readJSON(ctx, t, d.dir()+"/"+verifyName, &v)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			if err == nil {
				m.Verified = &v
			}
		}
		all = append(all, m)
	}
	return all, nil
}

// maxJSON bounds a manifest or verification record read from a target.
const maxJSON = 64 << 20

func readJSON(ctx context.Context, t target.Target, key string, v any) error {
	rc, err := t.Get(ctx, key, 0, -1)
	if errors.Is(err, target.ErrNotExist) {
		return fmt.Errorf("backup: %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("backup: read %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxJSON+1))
	if err != nil {
		return fmt.Errorf("backup: read %s: %w", key, err)
	}
	if len(b) > maxJSON {
		return fmt.Errorf("backup: %s: larger than %d bytes: %w", key, maxJSON, ErrCorrupt)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("backup: %s: %v: %w", key, err, ErrCorrupt)
	}
	return nil
}

// Incomplete returns the directories ("JOB/ID") of job's backups in t (""
// = every job) that hold files but no manifest: runs in progress, or
// leftovers of runs that crashed or were aborted. Sorted.
func Incomplete(ctx context.Context, t target.Target, job string) ([]string, error) {
	dirs, err := scan(ctx, t, job)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		if !d.manifest {
			out = append(out, d.dir())
		}
	}
	return out, nil
}

// Chain returns the chain ending at backup id in all (List's result for
// one job): the full it descends from, then the incrementals that lead to
// it, oldest first. A missing link is ErrNotFound, naming it.
func Chain(all []Manifest, id string) ([]Manifest, error) {
	byID := make(map[string]*Manifest, len(all))
	for i := range all {
		if prev, dup := byID[all[i].ID]; dup && prev.Job != all[i].Job {
			return nil, fmt.Errorf("%w: chain: backups of several jobs (%s, %s): list one job", ErrInvalid, prev.Job, all[i].Job)
		}
		byID[all[i].ID] = &all[i]
	}
	m := byID[id]
	if m == nil {
		return nil, fmt.Errorf("backup: %s: %w", id, ErrNotFound)
	}
	chain := []Manifest{*m}
	for m.Kind != KindFull {
		p := byID[m.Parent]
		if p == nil || p.Job != m.Job {
			return nil, fmt.Errorf("backup: chain of %s: parent %s of %s: %w", id, m.Parent, m.ID, ErrNotFound)
		}
		if len(chain) > len(all) {
			return nil, fmt.Errorf("backup: chain of %s: parent links loop: %w", id, ErrCorrupt)
		}
		m = p
		chain = append(chain, *m)
	}
	slices.Reverse(chain)
	return chain, nil
}

// ChainAt returns the chain of the newest backup in all (one job's) whose
// Time is at or before at: the state as of at. ErrNotFound if there is none.
func ChainAt(all []Manifest, at time.Time) ([]Manifest, error) {
	var best *Manifest
	for i := range all {
		m := &all[i]
		if m.Time.After(at) {
			continue
		}
		if best == nil || m.Time.After(best.Time) || m.Time.Equal(best.Time) && m.ID > best.ID {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("backup: no backup at or before %s: %w", at.UTC().Format(time.RFC3339), ErrNotFound)
	}
	return Chain(all, best.ID)
}

// Latest returns the chain of the newest backup in all (one job's).
// ErrNotFound if all is empty.
func Latest(all []Manifest) ([]Manifest, error) {
	if len(all) == 0 {
		return nil, fmt.Errorf("backup: no backup: %w", ErrNotFound)
	}
	newest := slices.MaxFunc(all, func(a, b Manifest) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.ID, b.ID))
	})
	return Chain(all, newest.ID)
}
