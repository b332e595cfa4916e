package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	repldspb "replds/proto"
)

// ErrTriggersFailed is returned by a Once run whose sync completed but some
// trigger failed; their changes stay pending for the next run.
var ErrTriggersFailed = errors.New("watcher: triggers failed")

// maxRecvMsg bounds one Watch message: a live batch can carry as much data
// as a server accepts in one Store call (64 MiB by default) plus metadata,
// far above gRPC's 4 MiB default.
const maxRecvMsg = 128 << 20

// errStreamEnded: the server closed the stream without an error.
var errStreamEnded = errors.New("watcher: stream closed by the server")

// errIdle: the server sent nothing for IdleTimeout.
var errIdle = errors.New("watcher: server silent for longer than the idle timeout")

// Client keepalive: gRPC refuses a ping interval below 10s, which is also
// the servers' enforcement minimum; the timeout is how long an unanswered
// ping waits before the connection is closed.
const (
	keepaliveMinTime = 10 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Watcher mirrors a remote prefix into a local directory. Create it with
// New; Run does the work.
type Watcher struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Watcher. It opens nothing: Run does.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{cfg: cfg, log: log.With("component", "watcher", "prefix", cfg.Prefix)}, nil
}

// Run opens the mirror directory and the state file (locking it), runs the
// triggers left pending by a previous run, then watches the servers,
// reconnecting with backoff, until ctx ends (it then returns nil) or a
// permanent error (invalid prefix, permission denied). With Once it returns
// nil after the first complete sync and its triggers, ErrTriggersFailed if
// one of them failed, and an error after MaxAttempts failed sessions in a
// row or if ctx ends first. Local errors (disk, state) end a session like a
// network error does. Everything is closed when Run returns. Run blocks;
// another Run on the same state file fails (the file is locked).
func (w *Watcher) Run(ctx context.Context) (err error) {
	a, closeLocal, err := w.openLocal()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeLocal(); err == nil {
			err = cerr
		}
	}()
	if _, err := a.runTriggers(ctx, true); err != nil {
		return w.stopped(ctx, err)
	}
	clients := make([]repldspb.RepldsClient, len(w.cfg.Servers))
	// Keepalive pings find a dead connection even when the idle timer is
	// not running (a long trigger); servers accept pings every 10s.
	opts := append(slices.Clip(w.cfg.DialOptions), grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time:    max(keepaliveMinTime, w.cfg.IdleTimeout),
		Timeout: keepaliveTimeout,
	}))
	for i, addr := range w.cfg.Servers {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fmt.Errorf("watcher: server %s: %w", addr, err)
		}
		defer conn.Close()
		clients[i] = repldspb.NewRepldsClient(conn)
	}
	r := &run{Watcher: w, a: a, clients: clients}
	return r.loop(ctx)
}

// stopped maps an error seen while ctx ended to Run's result.
func (w *Watcher) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if w.cfg.Once {
		return fmt.Errorf("watcher: stopped before completing a sync: %w", ctx.Err())
	}
	return nil
}

// openLocal opens the mirror directory and the state. The returned func
// closes them (and removes a dry run's throw-away state).
func (w *Watcher) openLocal() (*applier, func() error, error) {
	m := &mirror{dry: w.cfg.DryRun, fileMode: w.cfg.FileMode, dirMode: w.cfg.DirMode, owner: w.cfg.Owner, log: w.log}
	// A dry run reads the current snapshot through the symlink, as any
	// reader does, and needs no snapshot management.
	snapshotted := w.cfg.Atomic && !w.cfg.DryRun
	if !w.cfg.DryRun && !snapshotted {
		if err := os.Mkdir(w.cfg.Dir, w.cfg.DirMode); err == nil {
			if m.owner != nil {
				if err := os.Lchown(w.cfg.Dir, m.owner.UID, m.owner.GID); err != nil {
					return nil, nil, fmt.Errorf("watcher: %w", err)
				}
			}
			if err := os.Chmod(w.cfg.Dir, w.cfg.DirMode); err != nil {
				return nil, nil, fmt.Errorf("watcher: %w", err)
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("watcher: store directory: %w", err)
		}
	}
	var root *os.Root
	if !snapshotted {
		var err error
		root, err = os.OpenRoot(w.cfg.Dir)
		switch {
		case err == nil:
			m.root = root
		case w.cfg.DryRun && errors.Is(err, fs.ErrNotExist):
			// Nothing to read; a dry run writes nothing anyway.
		default:
			return nil, nil, fmt.Errorf("watcher: store directory: %w", err)
		}
	}
	closeRoot := func() {
		if root != nil {
			root.Close()
		}
		if m.snaps != nil {
			m.snaps.close()
		}
	}
	var (
		db  *bolt.DB
		tmp string
		err error
	)
	if w.cfg.DryRun {
		db, tmp, err = openDryState(w.cfg.stateFile(), w.cfg.Prefix, w.cfg.Dir)
	} else {
		db, err = openState(w.cfg.stateFile(), w.cfg.Prefix, w.cfg.Dir)
	}
	if err != nil {
		closeRoot()
		return nil, nil, err
	}
	a := &applier{
		db:     db,
		m:      m,
		prefix: w.cfg.Prefix,
		log:    w.log,
		trig:   w.cfg.Triggers,
		sched:  map[string]schedule{},
		now:    time.Now,
	}
	closeAll := func() error {
		err := db.Close()
		if tmp != "" {
			os.Remove(tmp)
		}
		closeRoot()
		if err != nil {
			return fmt.Errorf("watcher: close state: %w", err)
		}
		return nil
	}
	if snapshotted {
		sealed, err := readSealed(db)
		if err == nil {
			m.snaps, err = openSnapshots(w.cfg.Dir, sealed, func(n uint64) error { return writeSealed(db, n) }, m)
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("watcher: atomic store directory: %w", err)
		}
		m.root = m.snaps.root()
	}
	if err := m.tidy(a.tracked); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("watcher: tidy store directory: %w", err)
	}
	return a, closeAll, nil
}

// settle re-checks the snapshots of atomic mode before a session, so that
// a swap that failed in the previous one is completed.
func (a *applier) settle() error {
	if a.m.snaps == nil {
		return nil
	}
	sealed, err := readSealed(a.db)
	if err == nil {
		err = a.m.snaps.settle(sealed)
	}
	a.m.root = a.m.snaps.root()
	if err != nil {
		return fmt.Errorf("watcher: atomic store directory: %w", err)
	}
	return nil
}

// tracked reports whether the local name is a leaf the state knows, so that
// a leaf named like a temporary file is not taken for one.
func (a *applier) tracked(name string) bool {
	candidates := []string{a.prefix + "/" + name}
	if a.prefix == "/" {
		candidates = []string{"/" + name}
	}
	if name == a.localName(a.prefix) {
		candidates = append(candidates, a.prefix)
	}
	found := false
	a.db.View(func(tx *bolt.Tx) error {
		for _, p := range candidates {
			if tx.Bucket(bucketNodes).Get([]byte(p)) != nil {
				found = true
			}
		}
		return nil
	})
	return found
}

// run is one call of Run: the local side and a client per server.
type run struct {
	*Watcher
	a       *applier
	clients []repldspb.RepldsClient
	// failed counts the triggers that failed in the latest forced run
	// (the one that ends a Once sync).
	failed int
}

// errSynced ends a Once session after its sync and triggers.
var errSynced = errors.New("watcher: synced")

// loop runs sessions against the servers in turn, from a random one, with
// exponential backoff and full jitter between failures.
func (r *run) loop(ctx context.Context) error {
	failures := 0
	for i := rand.IntN(len(r.clients)); ; i = (i + 1) % len(r.clients) {
		addr := r.cfg.Servers[i]
		progress, err := r.session(ctx, r.clients[i], addr)
		switch {
		case errors.Is(err, errSynced):
			if r.failed > 0 {
				return fmt.Errorf("%w: %d of them; their changes stay pending", ErrTriggersFailed, r.failed)
			}
			return nil
		case ctx.Err() != nil:
			return r.stopped(ctx, err)
		case permanent(err):
			return fmt.Errorf("watcher: watch %s on %s: %w", r.cfg.Prefix, addr, err)
		}
		if progress {
			failures = 0
		}
		failures++
		if r.cfg.Once && failures >= r.cfg.MaxAttempts {
			return fmt.Errorf("watcher: no complete sync after %d attempts; last, from %s: %w", failures, addr, err)
		}
		d := r.backoff(failures)
		r.log.Warn("watch interrupted; reconnecting", "server", addr, "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return r.stopped(ctx, err)
		case <-t.C:
		}
	}
}

// backoff returns the delay before attempt n (1-based): uniform in
// [0, min(MaxBackoff, MinBackoff*2^(n-1))).
func (r *run) backoff(n int) time.Duration {
	ceil := r.cfg.MinBackoff
	for i := 1; i < n && ceil < r.cfg.MaxBackoff; i++ {
		ceil *= 2
	}
	ceil = min(ceil, r.cfg.MaxBackoff)
	return rand.N(ceil)
}

// permanent reports whether retrying cannot help.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

type recvResult struct {
	msg *repldspb.WatchResponse
	err error
}

// session runs one Watch stream until it fails, ctx ends, the server stays
// silent for IdleTimeout (errIdle), or (Once) the first sync is done
// (errSynced). progress reports whether a bookmark was received, i.e. the
// server was useful.
func (r *run) session(ctx context.Context, client repldspb.RepldsClient, addr string) (progress bool, err error) {
	if err := r.a.settle(); err != nil {
		return false, err
	}
	// A batch sealed in a session that then failed (before its triggers
	// ran, or before settle finished its swap) has its triggers pending:
	// run them now rather than at the next change.
	if _, err := r.a.runTriggers(ctx, false); err != nil {
		return false, err
	}
	token, full, err := r.a.startSession()
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Opening the stream waits for a connection: a server that accepts
	// TCP but never answers must not hold it for gRPC's 20s connect
	// timeout.
	opening := time.AfterFunc(r.cfg.IdleTimeout, cancel)
	stream, err := client.Watch(sctx, &repldspb.WatchRequest{Prefix: r.cfg.Prefix, Token: token},
		grpc.MaxCallRecvMsgSize(maxRecvMsg))
	if !opening.Stop() && ctx.Err() == nil {
		return false, fmt.Errorf("%w: opening the stream", errIdle)
	}
	if err != nil {
		return false, err
	}
	r.log.Info("watching", "server", addr, "resume", token != nil)
	// waiting holds when the receiver started waiting for a message (unix
	// ns), 0 while it hands one over: the silence the idle timer measures
	// is the server's, not the time spent applying a batch or running a
	// trigger.
	var waiting atomic.Int64
	msgs := make(chan recvResult)
	wg.Go(func() {
		for {
			waiting.Store(time.Now().UnixNano())
			m, err := stream.Recv()
			waiting.Store(0)
			select {
			case msgs <- recvResult{m, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	idle := time.NewTimer(r.cfg.IdleTimeout)
	defer idle.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var due <-chan time.Time
		if next, ok := r.a.nextDue(); ok {
			timer.Reset(time.Until(next))
			due = timer.C
		}
		select {
		case res := <-msgs:
			timer.Stop()
			if errors.Is(res.err, io.EOF) {
				return progress, errStreamEnded
			}
			if res.err != nil {
				return progress, res.err
			}
			done, err := r.handle(ctx, res.msg, &full)
			if err != nil {
				return progress, err
			}
			progress = progress || res.msg.Bookmark != nil
			if done {
				return progress, errSynced
			}
		case <-due:
			if _, err := r.a.runTriggers(ctx, false); err != nil {
				return progress, err
			}
		case <-idle.C:
			wait := r.cfg.IdleTimeout
			if since := waiting.Load(); since != 0 {
				silent := time.Since(time.Unix(0, since))
				if silent >= r.cfg.IdleTimeout {
					return progress, fmt.Errorf("%w: nothing for %s", errIdle, silent.Round(time.Millisecond))
				}
				wait -= silent
			}
			idle.Reset(wait)
		case <-ctx.Done():
			return progress, ctx.Err()
		}
	}
}

// startSession returns the token to watch from and whether the replay
// that follows is a complete state: after a reset, and whenever there is no
// token. For a complete state, the set of seen paths starts empty.
func (a *applier) startSession() (token *repldspb.Vector, full bool, err error) {
	token, full, err = readToken(a.db)
	if err != nil {
		return nil, false, err
	}
	if full {
		token = nil
	}
	full = token == nil
	if full {
		if err := a.db.Update(func(tx *bolt.Tx) error { return clearBucket(tx, bucketSeen) }); err != nil {
			return nil, false, fmt.Errorf("watcher: state: %w", err)
		}
	}
	return token, full, nil
}

// handle applies one message. full tracks whether the current replay is a
// complete state (no token, or after a reset). It reports whether a Once
// run is done.
func (r *run) handle(ctx context.Context, msg *repldspb.WatchResponse, full *bool) (done bool, err error) {
	a := r.a
	if msg.Reset_ {
		r.log.Warn("server reset the mirror; resyncing in full")
		err := a.db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put(keyFull, []byte{1}); err != nil {
				return err
			}
			return clearBucket(tx, bucketSeen)
		})
		if err != nil {
			return false, fmt.Errorf("watcher: state: %w", err)
		}
		*full = true
	}
	if len(msg.Nodes) > 0 {
		if err := a.applyPage(msg.Nodes, *full); err != nil {
			return false, fmt.Errorf("watcher: apply: %w", err)
		}
	}
	if msg.Bookmark == nil {
		return false, nil
	}
	endFull := msg.Synced && *full
	if endFull {
		if err := a.deleteUnseen(); err != nil {
			return false, fmt.Errorf("watcher: apply: %w", err)
		}
	}
	var snap uint64
	if a.m.snaps != nil && a.m.snaps.staging != nil {
		snap = a.m.snaps.next
	}
	changed, touched, err := a.seal(msg.Bookmark, endFull, snap)
	if err != nil {
		return false, fmt.Errorf("watcher: %w", err)
	}
	// Atomic mode: the batch becomes visible here, in one rename, before
	// any trigger runs.
	if err := a.m.publish(changed > 0); err != nil {
		return false, fmt.Errorf("watcher: publish snapshot: %w", err)
	}
	if endFull {
		*full = false
	}
	if changed > 0 || a.stats != (batchStats{}) {
		r.log.Info("batch applied", append([]any{"changes", changed}, a.stats.attrs()...)...)
	}
	a.stats = batchStats{}
	r.cfg.Metrics.bookmarkApplied(msg.Bookmark, changed)
	if msg.Synced {
		r.log.Info("synced")
	}
	once := r.cfg.Once && msg.Synced
	if changed > 0 || once {
		if err := a.plan(touched); err != nil {
			return false, fmt.Errorf("watcher: %w", err)
		}
		failed, err := a.runTriggers(ctx, once)
		if err != nil {
			return false, err
		}
		r.failed = failed
	}
	return once, nil
}
