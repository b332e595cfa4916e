package watcher

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/lww"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/triggers"
)

// The applier is the file mirror's follow.Sink: the follower calls it from
// one goroutine, as the contract says.
var (
	_ follow.Sink  = (*applier)(nil)
	_ follow.Timer = (*applier)(nil)
)

// Token settles the snapshots of atomic mode (completing a swap that
// failed in the previous session), checks the mirror against the state at
// the first session (check: what drifted is marked for repair and a full
// resync begins), runs the triggers a failed session or a previous run left
// pending, and returns the persisted token: nil when there is none or a
// full resync is pending, and then the set of seen paths starts empty.
func (a *applier) Token(ctx context.Context) (*repldspb.Vector, error) {
	if err := a.settle(); err != nil {
		return nil, err
	}
	if !a.checked {
		if _, err := a.check(ctx); err != nil {
			return nil, err
		}
		a.checked = true
	}
	// A batch sealed in a session that then failed (before its triggers
	// ran, or before settle finished its swap) has its triggers pending:
	// run them now rather than at the next change. The first session runs
	// those a previous run left, quiescence windows or not: the schedule
	// lives in memory and is gone.
	if _, err := a.runTriggers(ctx, !a.started); err != nil {
		return nil, err
	}
	a.started = true
	token, full, err := a.st.token()
	if err != nil || full {
		return nil, err
	}
	return token, nil
}

// Reset begins a full resync: no path seen yet, and the resync recorded
// as pending, so that it is redone from scratch if interrupted.
func (a *applier) Reset(ctx context.Context) error {
	return a.st.startFull()
}

// Apply writes a page of nodes to the mirror (see applyPage).
func (a *applier) Apply(ctx context.Context, p follow.Page) error {
	if err := a.applyPage(ctx, p.Nodes, p.Full); err != nil {
		return fmt.Errorf("watcher: apply: %w", err)
	}
	return nil
}

// Bookmark ends the open batch: after a full resync, the leaves it lacked
// are deleted; the state records the token and hands the changes to the
// triggers; in atomic mode the snapshot is published; then the triggers
// run (all pending ones, forced, at a Once run's sync).
func (a *applier) Bookmark(ctx context.Context, b follow.Bookmark) error {
	if b.Full {
		if err := a.deleteUnseen(ctx); err != nil {
			return fmt.Errorf("watcher: apply: %w", err)
		}
	}
	if err := a.retryBlocked(); err != nil {
		return fmt.Errorf("watcher: apply: %w", err)
	}
	changed, touched, err := a.commitBatch(b)
	if err != nil {
		return err
	}
	if b.Synced {
		if err := a.reportUnconverged(); err != nil {
			return err
		}
	}
	once := a.once && b.Synced
	if changed == 0 && !once {
		return nil
	}
	if err := a.plan(touched); err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	failed, err := a.runTriggers(ctx, once)
	if err != nil {
		return err
	}
	a.failed = failed
	return nil
}

// commitBatch seals the batch in one state transaction (see state.seal):
// the token is persisted, a full resync ends with b.Full, and the batch's
// changes go to every current trigger whose path covers them. In atomic
// mode the staging snapshot is recorded as sealed there, then published.
// It logs and counts what the batch did. A heartbeat (nothing changed, the
// token already persisted) is told in a read-only transaction and writes
// nothing: no fsync per heartbeat.
func (a *applier) commitBatch(b follow.Bookmark) (changed int, touched map[string]bool, err error) {
	token, err := proto.Marshal(b.Token)
	if err != nil {
		return 0, nil, fmt.Errorf("watcher: encode token: %w", err)
	}
	touched = map[string]bool{}
	if b.Full || !a.st.unchanged(token) {
		var list []triggers.Trigger
		if a.trig != nil {
			list = a.trig.List()
		}
		var snap uint64
		if a.m.snaps != nil && a.m.snaps.staging != nil {
			snap = a.m.snaps.next
		}
		if changed, touched, err = a.st.seal(token, b.Full, snap, list); err != nil {
			return 0, nil, fmt.Errorf("watcher: seal batch: %w", err)
		}
	}
	if err := a.dropTombstones(b.Token); err != nil {
		return 0, nil, err
	}
	if err := a.st.erase(); err != nil {
		// The state works on; the next bookmark retries.
		a.log.Warn("state compaction failed", "err", err)
	}
	// Atomic mode: the batch becomes visible here, in one rename, before
	// any trigger runs.
	if err := a.m.publish(changed > 0); err != nil {
		return 0, nil, fmt.Errorf("watcher: publish snapshot: %w", err)
	}
	if changed > 0 || a.stats != (batchStats{}) {
		a.log.Info("batch applied", append([]any{"changes", changed}, a.stats.attrs()...)...)
	}
	a.stats = batchStats{}
	a.metrics.bookmarkApplied(b.Token, changed)
	return changed, touched, nil
}

// reportUnconverged logs the end of a sync: "synced", or an error naming
// the leaves that are not in the mirror as they should be (blocked by a
// local directory, or drifted and not brought again by the replay), which
// stay pending. It keeps them for a Once run's result.
func (a *applier) reportUnconverged() error {
	repair, blocked, err := a.st.unconverged()
	if err != nil {
		return fmt.Errorf("watcher: state: %w", err)
	}
	a.unconverged = a.unconverged[:0]
	for _, p := range blocked {
		a.unconverged = append(a.unconverged, p+" (local directory in the way)")
	}
	for _, p := range repair {
		a.unconverged = append(a.unconverged, p+" (drifted, not brought again by the server)")
	}
	if len(a.unconverged) == 0 {
		a.log.Info("synced")
		return nil
	}
	a.log.Error("synced, but leaves are not in place; they stay pending", "count", len(a.unconverged), "paths", firstFew(a.unconverged))
	return nil
}

// firstFew returns at most maxNamed of list, and how many more there are.
func firstFew(list []string) string {
	const maxNamed = 10
	if len(list) <= maxNamed {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:maxNamed], ", "), len(list)-maxNamed)
}

// dropInterval is how often the state's tombstones are looked at: each
// look reads every record.
const dropInterval = 10 * time.Minute

// dropTombstones drops from the state, at most every dropInterval, the
// tombstones older than the grace that token, the resume token just
// persisted, covers: the state needs a tombstone only to refuse an older
// version of its path from a server that lags, within the grace.
func (a *applier) dropTombstones(token *repldspb.Vector) error {
	now := a.now()
	if !a.lastDrop.IsZero() && now.Sub(a.lastDrop) < dropInterval {
		return nil
	}
	a.lastDrop = now
	covered := map[uint64]uint64{}
	for _, e := range token.GetEntries() {
		covered[e.Origin] = max(covered[e.Origin], e.Seq)
	}
	// Versions are hybrid logical clock values: wall milliseconds in
	// the top 48 bits.
	before := lww.VersionAt(now.Add(-a.tombGrace))
	n, err := a.st.dropTombstones(covered, before)
	if n > 0 {
		a.log.Info("tombstones dropped from the state", "count", n)
	}
	return err
}

// Due returns when the next trigger with a quiescence window is due.
func (a *applier) Due() (time.Time, bool) { return a.nextDue() }

// Tick runs the triggers that are due.
func (a *applier) Tick(ctx context.Context) error {
	_, err := a.runTriggers(ctx, false)
	return err
}
