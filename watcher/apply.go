package watcher

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"slices"
	"time"

	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

// applier applies received nodes to the mirror and records them in the
// state. It is used by one goroutine.
type applier struct {
	st     *state
	m      *mirror
	prefix string
	log    *slog.Logger
	// trig runs the triggers; nil = none.
	trig Triggers
	// sched holds the due times of triggers with a quiescence window. It
	// lives in memory only: after a restart, pending work runs right away.
	sched map[string]schedule
	// now is the clock of the quiescence windows.
	now func() time.Time
	// stats counts what the open batch did, for the log line that ends it.
	stats batchStats
	// once: a synced bookmark ends a Once run, its triggers forced.
	once bool
	// metrics records the bookmarks applied; nil = none.
	metrics *Metrics
	// started: a session began, and with it the triggers a previous run
	// left pending ran.
	started bool
	// checked: the mirror was checked against the state (check), once per
	// run, before its first session.
	checked bool
	// failed counts the triggers that failed in the latest run after a
	// batch (the one that ends a Once sync).
	failed int
	// unconverged lists, after a synced bookmark, the leaves not in the
	// mirror as they should be (awaiting repair, or blocked).
	unconverged []string
}

// batchStats counts what a batch did. Written counts files actually
// written; a leaf that could not be is Blocked, not Written.
type batchStats struct {
	Written, Repaired, Deleted, Skipped, Refused, Shadowed, Blocked int
}

func (s batchStats) attrs() []any {
	return []any{"written", s.Written, "repaired", s.Repaired, "deleted", s.Deleted, "skipped", s.Skipped,
		"refused", s.Refused, "shadowed", s.Shadowed, "blocked", s.Blocked}
}

// pageTx is one state transaction plus the directories to fsync before it
// commits: the state never records a change that is not durable on disk.
type pageTx struct {
	*stateTx
	a    *applier
	dirs dirty
	done bool
}

func (a *applier) begin() (*pageTx, error) {
	tx, err := a.st.begin()
	if err != nil {
		return nil, err
	}
	return &pageTx{stateTx: tx, a: a, dirs: dirty{}}, nil
}

func (p *pageTx) commit() error {
	if err := p.a.m.syncDirs(p.dirs); err != nil {
		return err
	}
	if err := p.stateTx.commit(); err != nil {
		return err
	}
	p.done = true
	return nil
}

// rollback abandons the transaction if it was not committed.
func (p *pageTx) rollback() {
	p.a.m.dropPending()
	if !p.done {
		p.stateTx.rollback()
		p.done = true
	}
}

// checkpoint commits what was done so far and starts a new transaction.
func (p *pageTx) checkpoint() error {
	if err := p.commit(); err != nil {
		return err
	}
	tx, err := p.a.st.begin()
	if err != nil {
		return err
	}
	p.stateTx, p.done = tx, false
	return nil
}

// localName maps a remote path (valid, under the prefix) to its name under
// the store directory: the part below the prefix, or the last segment when
// the path is the prefix itself (a single-leaf pull).
func (a *applier) localName(p string) string {
	switch {
	case p == a.prefix:
		return path.Base(p)
	case a.prefix == "/":
		return p[1:]
	default:
		return p[len(a.prefix)+1:]
	}
}

// ancestors returns the remote ancestors of p that are within the prefix
// (the prefix included), nearest first.
func (a *applier) ancestors(p string) []string {
	var out []string
	for q := path.Dir(p); q != "/" && nodepath.Under(q, a.prefix); q = path.Dir(q) {
		out = append(out, q)
	}
	return out
}

// checkpointNodes and checkpointBytes bound what a page keeps open: past
// either, what was applied so far is made durable and committed, and a new
// transaction goes on. A page of any size thus holds at most that many
// temporary files and uncommitted state, and takes time linear in its
// nodes.
var (
	checkpointNodes = 16384
	checkpointBytes = 64 << 20
)

// applyPage applies one page of nodes, in a transaction per
// checkpointNodes nodes (or checkpointBytes of data). With full set, the
// page is part of a complete replay and every path in it is noted as seen.
// On error (ctx ending included: it is checked at every node) nothing of
// the open transaction is recorded and its temporary files are removed;
// what is applied again when the page is received again is skipped or
// rewritten, as versions say.
func (a *applier) applyPage(ctx context.Context, nodes []*repldspb.Node, full bool) error {
	p, err := a.begin()
	if err != nil {
		return err
	}
	defer p.rollback()
	count, size := 0, 0
	for _, n := range nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if count >= checkpointNodes || size >= checkpointBytes {
			if err := p.checkpoint(); err != nil {
				return err
			}
			count, size = 0, 0
		}
		if err := a.applyNode(p, n, full); err != nil {
			return err
		}
		count++
		size += len(n.Data)
	}
	return p.commit()
}

func (a *applier) applyNode(p *pageTx, n *repldspb.Node, full bool) error {
	if err := nodepath.Validate(n.Path); err != nil {
		a.log.Warn("refused node: invalid path", "err", err)
		a.stats.Refused++
		return nil
	}
	if !nodepath.Under(n.Path, a.prefix) {
		a.log.Warn("refused node: outside the prefix", "path", n.Path, "prefix", a.prefix)
		a.stats.Refused++
		return nil
	}
	if full {
		if err := p.see(n.Path); err != nil {
			return err
		}
	}
	rec := nodeRec{Version: n.Version, Origin: n.Origin, Deleted: n.Deleted}
	old, known, err := p.version(n.Path)
	if err != nil {
		return err
	}
	// The version applied already is written again when the check found
	// its file drifted: the replay it asked for brings the data.
	repair := known && rec.same(old) && !rec.Deleted && p.repairing(n.Path)
	if known && !rec.newer(old) && !repair {
		a.stats.Skipped++
		return nil
	}
	wasLive := known && !old.Deleted
	if n.Deleted {
		return a.applyDelete(p, n.Path, rec, wasLive)
	}
	return a.applyLive(p, n.Path, rec, n.Data, wasLive, repair)
}

// applyLive writes a live leaf, resolving leaf/directory clashes: a leaf
// with live nodes under it is shadowed (kept in the state, not written), and
// writing a leaf shadows any live leaf above it. A leaf that a local
// directory keeps from being written is blocked: its data stays in the
// state and each later bookmark tries again (retryBlocked). repair says
// that the version is the one applied already, written again because its
// file drifted.
func (a *applier) applyLive(p *pageTx, rp string, rec nodeRec, data []byte, wasLive, repair bool) error {
	onDisk := wasLive && !p.shadowed(rp) && !p.blocked(rp)
	clash, err := p.hasLiveDescendant(rp)
	if err != nil {
		return err
	}
	if clash {
		if err := p.record(rp, change{Before: onDisk, After: false}); err != nil {
			return err
		}
		if err := p.shadow(rp, data); err != nil {
			return err
		}
		if err := a.settled(p, rp); err != nil {
			return err
		}
		if err := p.setVersion(rp, rec); err != nil {
			return err
		}
		a.stats.Shadowed++
		a.log.Warn("leaf shadowed by directory", "path", rp, "version", rec.Version, "origin", rec.Origin)
		return nil
	}
	for _, anc := range a.ancestors(rp) {
		if err := a.shadowAncestor(p, anc, rp); err != nil {
			return err
		}
	}
	name := a.localName(rp)
	if err := a.m.ensureDir(path.Dir(name), p.dirs); err != nil {
		return err
	}
	sum, err := a.m.writeFile(name, data, p.dirs)
	if errors.Is(err, errDirInTheWay) {
		return a.blockLeaf(p, rp, rec, data, onDisk)
	}
	if err != nil {
		return err
	}
	switch {
	case a.m.dry:
		a.log.Info("would write", "path", rp, "version", rec.Version, "size", len(data))
	case repair:
		a.log.Info("repaired", "path", rp, "version", rec.Version, "size", len(data))
	default:
		a.log.Debug("wrote", "path", rp, "version", rec.Version, "size", len(data))
	}
	if err := p.unshadow(rp); err != nil {
		return err
	}
	if err := a.settled(p, rp); err != nil {
		return err
	}
	rec.File = sum
	if err := p.setVersion(rp, rec); err != nil {
		return err
	}
	if repair {
		a.stats.Repaired++
	} else {
		a.stats.Written++
	}
	return p.record(rp, change{Before: onDisk, After: true})
}

// settled forgets that rp awaits a repair or a retry: its node was just
// written, shadowed or deleted.
func (a *applier) settled(p *pageTx, rp string) error {
	if err := p.repaired(rp); err != nil {
		return err
	}
	return p.unblock(rp)
}

// blockLeaf records the live leaf rp, which a local directory that is not
// the mirror's keeps from being written: applied (so that versions never go
// back), its data kept in the state for a later batch to write, and
// reported as an error. The file is not on disk.
func (a *applier) blockLeaf(p *pageTx, rp string, rec nodeRec, data []byte, onDisk bool) error {
	if err := p.repaired(rp); err != nil {
		return err
	}
	if err := p.block(rp, data); err != nil {
		return err
	}
	if err := p.setVersion(rp, rec); err != nil {
		return err
	}
	a.stats.Blocked++
	a.log.Error("leaf not written: local directory in the way; retried with each batch", "path", rp, "local", a.localName(rp))
	return p.record(rp, change{Before: onDisk, After: false})
}

// retryBlocked writes the blocked leaves whose way is clear now, as part of
// the open batch.
func (a *applier) retryBlocked() error {
	blocked, err := a.st.blockedPaths()
	if err != nil {
		return err
	}
	// Only the leaves whose way is clear: a heartbeat writes nothing while
	// the obstruction stays.
	free := slices.DeleteFunc(blocked, func(rp string) bool { return a.m.occupied(a.localName(rp)) })
	if len(free) == 0 {
		return nil
	}
	p, err := a.begin()
	if err != nil {
		return err
	}
	defer p.rollback()
	for _, rp := range free {
		name := a.localName(rp)
		data, ok := p.blockedData(rp)
		if !ok {
			continue
		}
		rec, _, err := p.version(rp)
		if err != nil {
			return err
		}
		if err := a.m.ensureDir(path.Dir(name), p.dirs); err != nil {
			return err
		}
		sum, err := a.m.writeFile(name, data, p.dirs)
		if errors.Is(err, errDirInTheWay) {
			continue
		}
		if err != nil {
			return err
		}
		if err := p.unblock(rp); err != nil {
			return err
		}
		rec.File = sum
		if err := p.setVersion(rp, rec); err != nil {
			return err
		}
		a.stats.Written++
		a.log.Info("blocked leaf written", "path", rp, "version", rec.Version)
		if err := p.record(rp, change{Before: false, After: true}); err != nil {
			return err
		}
	}
	return p.commit()
}

// shadowAncestor turns the live leaf anc, if it is one and is on disk, into
// a shadowed leaf because child is being written under it: its data moves
// into the state (committed before the file goes, so a crash loses
// nothing) and its file is removed to make room for the directory.
func (a *applier) shadowAncestor(p *pageTx, anc, child string) error {
	rec, known, err := p.version(anc)
	if err != nil || !known || rec.Deleted || p.shadowed(anc) {
		return err
	}
	if data, ok := p.blockedData(anc); ok {
		// Not on disk: the directory in its way becomes the one above
		// child, and its data moves from blocked to shadowed.
		if err := p.unblock(anc); err != nil {
			return err
		}
		a.stats.Shadowed++
		a.log.Warn("leaf shadowed by directory", "path", anc, "under", child, "version", rec.Version, "origin", rec.Origin)
		return p.shadow(anc, data)
	}
	name := a.localName(anc)
	// The leaf may have been written in this very page.
	if err := a.m.flush(); err != nil {
		return err
	}
	data, err := a.m.readFile(name)
	if err != nil {
		// Nothing usable on disk (removed by hand?): keep an empty
		// shadow; the next write of the leaf brings it back.
		a.log.Warn("shadowed leaf unreadable", "path", anc, "err", err)
		data = []byte{}
	}
	if err := p.shadow(anc, data); err != nil {
		return err
	}
	if err := p.record(anc, change{Before: true, After: false}); err != nil {
		return err
	}
	if err := p.checkpoint(); err != nil {
		return err
	}
	if _, err := a.m.removeFile(name, p.dirs); err != nil {
		return err
	}
	a.stats.Shadowed++
	a.log.Warn("leaf shadowed by directory", "path", anc, "under", child, "version", rec.Version, "origin", rec.Origin)
	return nil
}

// applyDelete applies a tombstone (or, during a full resync, the removal of
// a path absent from the replay). The tombstone's version is kept so an
// older write arriving later cannot resurrect the leaf.
func (a *applier) applyDelete(p *pageTx, rp string, rec nodeRec, wasLive bool) error {
	rec.Deleted, rec.File = true, fileSum{}
	if err := p.setVersion(rp, rec); err != nil {
		return err
	}
	if err := p.repaired(rp); err != nil {
		return err
	}
	if _, ok := p.blockedData(rp); ok {
		// Never written: nothing changes in the mirror.
		a.stats.Deleted++
		return p.unblock(rp)
	}
	// A file the state does not know may still be on disk: a page's files
	// are renamed into place before its state commits, and a crash or an
	// error in between leaves them. The mirror owns DIR, so the tombstone
	// removes it all the same (and triggers hear of it).
	if !wasLive {
		if p.shadowed(rp) {
			return nil
		}
		onDisk, err := a.m.isFile(a.localName(rp))
		if err != nil || !onDisk {
			return err
		}
	}
	a.stats.Deleted++
	if p.shadowed(rp) {
		// Not on disk: nothing changes in the mirror.
		return p.unshadow(rp)
	}
	if err := p.record(rp, change{Before: true, After: false}); err != nil {
		return err
	}
	name := a.localName(rp)
	isDir, err := a.m.removeFile(name, p.dirs)
	if err != nil {
		return err
	}
	switch {
	case isDir:
		a.log.Warn("leaf not removed: local directory in its place", "path", rp, "local", name)
	case a.m.dry:
		a.log.Info("would delete", "path", rp, "version", rec.Version)
	default:
		a.log.Debug("deleted", "path", rp, "version", rec.Version)
	}
	a.m.prune(path.Dir(name), p.dirs)
	for _, anc := range a.ancestors(rp) {
		if err := a.restoreAncestor(p, anc); err != nil {
			return err
		}
	}
	return nil
}

// restoreAncestor writes back the shadowed leaf anc once nothing live is
// left under it.
func (a *applier) restoreAncestor(p *pageTx, anc string) error {
	data, ok := p.shadowData(anc)
	if !ok {
		return nil
	}
	busy, err := p.hasLiveDescendant(anc)
	if err != nil || busy {
		return err
	}
	name := a.localName(anc)
	if err := a.m.ensureDir(path.Dir(name), p.dirs); err != nil {
		return err
	}
	sum, err := a.m.writeFile(name, data, p.dirs)
	if err != nil {
		if errors.Is(err, errDirInTheWay) {
			a.log.Warn("shadowed leaf not restored: local directory in the way", "path", anc, "local", name)
			return nil
		}
		return err
	}
	if err := p.unshadow(anc); err != nil {
		return err
	}
	rec, _, err := p.version(anc)
	if err != nil {
		return err
	}
	rec.File = sum
	if err := p.setVersion(anc, rec); err != nil {
		return err
	}
	a.log.Info("shadowed leaf restored", "path", anc)
	return p.record(anc, change{Before: false, After: true})
}

// deleteUnseen ends a full resync: every live leaf the replay did not
// contain is gone on the servers, so it is deleted here too, committed
// every checkpointNodes. It stops when ctx ends; the resync, still
// pending, is then done again.
func (a *applier) deleteUnseen(ctx context.Context) error {
	gone, err := a.st.unseen()
	if err != nil || len(gone) == 0 {
		return err
	}
	a.log.Info("removing leaves absent from the full resync", "count", len(gone))
	p, err := a.begin()
	if err != nil {
		return err
	}
	defer p.rollback()
	for i, rp := range gone {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i > 0 && i%checkpointNodes == 0 {
			if err := p.checkpoint(); err != nil {
				return err
			}
		}
		rec, _, err := p.version(rp)
		if err != nil {
			return err
		}
		if err := a.applyDelete(p, rp, rec, true); err != nil {
			return err
		}
	}
	return p.commit()
}
