package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

// ErrPermanent, wrapped in a Sink error, makes Run return that error
// instead of retrying.
var ErrPermanent = errors.New("follow: permanent error")

// errStreamEnded: the server closed the stream without an error.
var errStreamEnded = errors.New("follow: stream closed by the server")

// errIdle: the server sent nothing for IdleTimeout.
var errIdle = errors.New("follow: server silent for longer than the idle timeout")

// errSynced ends a Once session after its first synced bookmark.
var errSynced = errors.New("follow: synced")

// Config configures a Follower.
type Config struct {
	// Prefix is the remote subtree to follow ("/" for all).
	Prefix string
	// Servers are the addresses to watch from. The follower starts at a
	// random one and moves on to the next after an error.
	Servers []string
	// DialOptions are passed to grpc.NewClient for every server: transport
	// credentials at least. The follower adds its keepalive (pings at the
	// pace servers accept, so that a dead connection is found even while
	// the sink is busy).
	DialOptions []grpc.DialOption
	// MinBackoff and MaxBackoff bound the delay between reconnections
	// (exponential, full jitter).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Once makes Run return nil after the first bookmark with Synced set
	// that the sink accepted.
	Once bool
	// MaxAttempts is, with Once, how many sessions in a row may fail before
	// Run gives up. Without Once the follower retries forever.
	MaxAttempts int
	// IdleTimeout is how long a stream may stay silent before the follower
	// gives up on its server. A server sends a bookmark at least every
	// BookmarkInterval (5s by default) even when nothing changes, so about
	// three times that tells a stuck server or a black-holed connection
	// from a quiet tree.
	IdleTimeout time.Duration
	// Logger receives the follower's logs (servers and errors). The
	// follower adds no attributes: the caller names its component. nil =
	// slog.Default().
	Logger *slog.Logger

	// Source, when set, returns the Source of the server at addr instead
	// of a gRPC client (DialOptions are then unused): an in-memory server
	// in a simulation. Run calls it once per server; the caller owns what
	// it returns. nil = gRPC.
	Source func(addr string) Source
	// Clock is the time the follower reads and waits on (the idle timeout,
	// the backoff, a sink's Timer). nil = the real clock.
	Clock Clock
	// Rand draws the first server and the backoff jitter. The follower
	// uses it from Run's goroutine only. nil = math/rand/v2's global
	// source.
	Rand *rand.Rand
}

// DefaultIdleTimeout is three times the servers' default bookmark interval.
const DefaultIdleTimeout = 15 * time.Second

// DefaultConfig returns the defaults: 100ms..30s backoff, 10 attempts for
// Once, a 15s idle timeout (three bookmark intervals), the real clock.
func DefaultConfig() Config {
	return Config{
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  30 * time.Second,
		MaxAttempts: 10,
		IdleTimeout: DefaultIdleTimeout,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if err := nodepath.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("follow: config: prefix: %w", err)
	}
	if len(c.Servers) == 0 {
		return errors.New("follow: config: no server")
	}
	for _, s := range c.Servers {
		if strings.TrimSpace(s) == "" {
			return errors.New("follow: config: empty server address")
		}
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("follow: config: backoff %s..%s: want 0 < min <= max", c.MinBackoff, c.MaxBackoff)
	}
	if c.Once && c.MaxAttempts <= 0 {
		return errors.New("follow: config: max attempts must be positive")
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("follow: config: idle timeout %s: want > 0", c.IdleTimeout)
	}
	return nil
}

// Follower follows the Watch stream of a prefix on one server at a time
// and hands what it receives to a Sink. Create it with New; Run does the
// work.
type Follower struct {
	cfg   Config
	sink  Sink
	log   *slog.Logger
	clock Clock
}

// New checks cfg and returns a Follower feeding sink. It dials nothing:
// Run does.
func New(cfg Config, sink Sink) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	clock := cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	return &Follower{cfg: cfg, sink: sink, log: log, clock: clock}, nil
}

// Run dials the servers and follows the stream, reconnecting to the next
// server with backoff after a failure, until ctx ends (it then returns nil,
// or with Once an error), a permanent error (invalid prefix, permission
// denied, a Sink error wrapping ErrPermanent), or with Once the first
// synced bookmark (nil) or MaxAttempts failed sessions in a row (an error).
// Run blocks; the connections are closed when it returns.
func (f *Follower) Run(ctx context.Context) error {
	sources := make([]Source, len(f.cfg.Servers))
	for i, addr := range f.cfg.Servers {
		if f.cfg.Source != nil {
			sources[i] = f.cfg.Source(addr)
			continue
		}
		opts := append(slices.Clip(f.cfg.DialOptions), keepaliveOption(f.cfg.IdleTimeout))
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fmt.Errorf("follow: server %s: %w", addr, err)
		}
		defer conn.Close()
		sources[i] = grpcSource{repldspb.NewRepldsClient(conn)}
	}
	return f.loop(ctx, sources)
}

// stopped maps an error seen while ctx ended to Run's result.
func (f *Follower) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if f.cfg.Once {
		return fmt.Errorf("follow: stopped before completing a sync: %w", ctx.Err())
	}
	return nil
}

// loop runs sessions against the servers in turn, from a random one, with
// exponential backoff and full jitter between failures.
func (f *Follower) loop(ctx context.Context, sources []Source) error {
	failures := 0
	for i := f.intN(len(sources)); ; i = (i + 1) % len(sources) {
		addr := f.cfg.Servers[i]
		progress, err := f.session(ctx, sources[i], addr)
		switch {
		case errors.Is(err, errSynced):
			return nil
		case ctx.Err() != nil:
			return f.stopped(ctx, err)
		case errors.Is(err, ErrPermanent):
			return err
		case permanent(err):
			return fmt.Errorf("follow: watch %s on %s: %w", f.cfg.Prefix, addr, err)
		}
		if progress {
			failures = 0
		}
		failures++
		if f.cfg.Once && failures >= f.cfg.MaxAttempts {
			return fmt.Errorf("follow: no complete sync after %d attempts; last, from %s: %w", failures, addr, err)
		}
		d := f.backoff(failures)
		f.log.Warn("watch interrupted; reconnecting", "server", addr, "err", err, "retry_in", d)
		t, fired := f.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return f.stopped(ctx, err)
		case <-fired:
		}
	}
}

// backoff returns the delay before attempt n (1-based): uniform in
// [0, min(MaxBackoff, MinBackoff*2^(n-1))).
func (f *Follower) backoff(n int) time.Duration {
	ceil := f.cfg.MinBackoff
	for i := 1; i < n && ceil < f.cfg.MaxBackoff; i++ {
		ceil *= 2
	}
	ceil = min(ceil, f.cfg.MaxBackoff)
	if f.cfg.Rand == nil {
		return rand.N(ceil)
	}
	return time.Duration(f.cfg.Rand.Int64N(int64(ceil)))
}

// intN returns a random index below n.
func (f *Follower) intN(n int) int {
	if f.cfg.Rand == nil {
		return rand.IntN(n)
	}
	return f.cfg.Rand.IntN(n)
}

// permanent reports whether retrying cannot help.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// session runs one Watch stream until it fails, ctx ends, the server stays
// silent for IdleTimeout (errIdle), or (Once) the first sync is done
// (errSynced). progress reports whether a bookmark was handed over, i.e.
// the server was useful.
func (f *Follower) session(ctx context.Context, src Source, addr string) (progress bool, err error) {
	token, full, err := Start(ctx, f.sink)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := f.open(ctx, sctx, cancel, src, token)
	if err != nil {
		return false, err
	}
	f.log.Info("watching", "server", addr, "resume", token != nil)
	rcv := startReceiver(sctx, stream, f.clock)
	defer func() {
		cancel()
		rcv.wg.Wait()
	}()
	return f.serve(ctx, rcv, full)
}

// open opens the stream. Opening waits for a connection: a server that
// accepts TCP but never answers must not hold it for gRPC's 20s connect
// timeout, so cancel ends sctx after IdleTimeout.
func (f *Follower) open(ctx, sctx context.Context, cancel context.CancelFunc, src Source, token *repldspb.Vector) (Stream, error) {
	opening := f.clock.AfterFunc(f.cfg.IdleTimeout, cancel)
	stream, err := src.Watch(sctx, &repldspb.WatchRequest{Prefix: f.cfg.Prefix, Token: token})
	if !opening.Stop() && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: opening the stream", errIdle)
	}
	return stream, err
}

type recvResult struct {
	msg *repldspb.WatchResponse
	err error
}

// receiver reads a stream on a goroutine of its own, so that the session
// can time the server's silence while the sink works.
type receiver struct {
	msgs chan recvResult
	// waiting holds when the receiver started waiting for a message (unix
	// ns), 0 while it hands one over: the silence the idle timer measures
	// is the server's, not the time the sink spends on a message.
	waiting atomic.Int64
	wg      sync.WaitGroup
}

// startReceiver starts receiving; the goroutine ends after an error or
// when ctx ends. The caller waits for it with wg.
func startReceiver(ctx context.Context, stream Stream, clock Clock) *receiver {
	r := &receiver{msgs: make(chan recvResult)}
	r.wg.Go(func() {
		for {
			r.waiting.Store(clock.Now().UnixNano())
			m, err := stream.Recv()
			r.waiting.Store(0)
			select {
			case r.msgs <- recvResult{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return r
}

// serve hands the received messages to the sink, runs its timer, and
// watches for silence. full says whether the session replays in full.
func (f *Follower) serve(ctx context.Context, rcv *receiver, full bool) (progress bool, err error) {
	timed, _ := f.sink.(Timer)
	idle, silent := f.clock.NewTimer(f.cfg.IdleTimeout)
	defer idle.Stop()
	timer, fired := f.clock.NewTimer(time.Hour)
	timer.Stop()
	for {
		var due <-chan time.Time
		if timed != nil {
			if next, ok := timed.Due(); ok {
				timer.Reset(next.Sub(f.clock.Now()))
				due = fired
			}
		}
		select {
		case res := <-rcv.msgs:
			timer.Stop()
			if errors.Is(res.err, io.EOF) {
				return progress, errStreamEnded
			}
			if res.err != nil {
				return progress, res.err
			}
			if res.msg.Reset_ {
				f.log.Warn("server cannot resume from the token; replaying in full")
			}
			synced, err := Handle(ctx, f.sink, res.msg, &full)
			if err != nil {
				return progress, err
			}
			progress = progress || res.msg.Bookmark != nil
			if synced && f.cfg.Once {
				return progress, errSynced
			}
		case <-due:
			if err := timed.Tick(ctx); err != nil {
				return progress, err
			}
		case <-silent:
			if err := f.silence(rcv, idle); err != nil {
				return progress, err
			}
		case <-ctx.Done():
			return progress, ctx.Err()
		}
	}
}

// silence checks, when the idle timer fires, how long the server has been
// silent: errIdle past IdleTimeout, else the timer is reset for the rest.
func (f *Follower) silence(rcv *receiver, idle Alarm) error {
	wait := f.cfg.IdleTimeout
	if since := rcv.waiting.Load(); since != 0 {
		silent := f.clock.Now().Sub(time.Unix(0, since))
		if silent >= f.cfg.IdleTimeout {
			return fmt.Errorf("%w: nothing for %s", errIdle, silent.Round(time.Millisecond))
		}
		wait -= silent
	}
	idle.Reset(wait)
	return nil
}
