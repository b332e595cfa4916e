package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"replds/nodepath"
	repldspb "replds/proto"
)

// ErrPermanent, wrapped in a Sink error, makes Run return that error
// instead of retrying.
var ErrPermanent = errors.New("follow: permanent error")

// maxRecvMsg bounds one Watch message: a live batch can carry as much data
// as a server accepts in one Store call (64 MiB by default) plus metadata,
// far above gRPC's 4 MiB default.
const maxRecvMsg = 128 << 20

// errStreamEnded: the server closed the stream without an error.
var errStreamEnded = errors.New("follow: stream closed by the server")

// errIdle: the server sent nothing for IdleTimeout.
var errIdle = errors.New("follow: server silent for longer than the idle timeout")

// errSynced ends a Once session after its first synced bookmark.
var errSynced = errors.New("follow: synced")

// Client keepalive: gRPC refuses a ping interval below 10s, which is also
// the servers' enforcement minimum; the timeout is how long an unanswered
// ping waits before the connection is closed.
const (
	keepaliveMinTime = 10 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Keepalive returns the dial option a Dial function should include:
// keepalive pings find a dead connection even when the idle timer is not
// running (a sink busy for long), at the pace servers accept.
func Keepalive(idleTimeout time.Duration) grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time:    max(keepaliveMinTime, idleTimeout),
		Timeout: keepaliveTimeout,
	})
}

// Config configures a Follower.
type Config struct {
	// Prefix is the remote subtree to follow ("/" for all).
	Prefix string
	// Servers are the addresses to watch from. The follower starts at a
	// random one and moves on to the next after an error.
	Servers []string
	// Dial returns a connection to addr; the follower closes it when Run
	// returns. Transport security is the caller's: the follower adds
	// nothing (include Keepalive). grpc.NewClient connects lazily, so Dial
	// should not block.
	Dial func(addr string) (*grpc.ClientConn, error)
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
	// BookmarkInterval (5s by default) even when nothing changes.
	IdleTimeout time.Duration
	// Logger receives the follower's logs (servers and errors). The
	// follower adds no attributes: the caller names its component. nil =
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: 100ms..30s backoff, 10 attempts for
// Once, a 15s idle timeout (three bookmark intervals).
func DefaultConfig() Config {
	return Config{
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  30 * time.Second,
		MaxAttempts: 10,
		IdleTimeout: 15 * time.Second,
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
	if c.Dial == nil {
		return errors.New("follow: config: no dial function")
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
	cfg  Config
	sink Sink
	log  *slog.Logger
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
	return &Follower{cfg: cfg, sink: sink, log: log}, nil
}

// Run dials the servers and follows the stream, reconnecting to the next
// server with backoff after a failure, until ctx ends (it then returns nil,
// or with Once an error), a permanent error (invalid prefix, permission
// denied, a Sink error wrapping ErrPermanent), or with Once the first
// synced bookmark (nil) or MaxAttempts failed sessions in a row (an error).
// Run blocks; the connections are closed when it returns.
func (f *Follower) Run(ctx context.Context) error {
	clients := make([]repldspb.RepldsClient, len(f.cfg.Servers))
	for i, addr := range f.cfg.Servers {
		conn, err := f.cfg.Dial(addr)
		if err != nil {
			return fmt.Errorf("follow: server %s: %w", addr, err)
		}
		defer conn.Close()
		clients[i] = repldspb.NewRepldsClient(conn)
	}
	return f.loop(ctx, clients)
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
func (f *Follower) loop(ctx context.Context, clients []repldspb.RepldsClient) error {
	failures := 0
	for i := rand.IntN(len(clients)); ; i = (i + 1) % len(clients) {
		addr := f.cfg.Servers[i]
		progress, err := f.session(ctx, clients[i], addr)
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
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return f.stopped(ctx, err)
		case <-t.C:
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

// session runs one Watch stream until it fails, ctx ends, the server stays
// silent for IdleTimeout (errIdle), or (Once) the first sync is done
// (errSynced). progress reports whether a bookmark was handed over, i.e.
// the server was useful.
func (f *Follower) session(ctx context.Context, client repldspb.RepldsClient, addr string) (progress bool, err error) {
	token, err := f.sink.Token(ctx)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := f.open(ctx, sctx, cancel, client, token)
	if err != nil {
		return false, err
	}
	f.log.Info("watching", "server", addr, "resume", token != nil)
	rcv := startReceiver(sctx, stream)
	defer func() {
		cancel()
		rcv.wg.Wait()
	}()
	return f.serve(ctx, rcv, token == nil)
}

// open opens the stream. Opening waits for a connection: a server that
// accepts TCP but never answers must not hold it for gRPC's 20s connect
// timeout, so cancel ends sctx after IdleTimeout.
func (f *Follower) open(ctx, sctx context.Context, cancel context.CancelFunc, client repldspb.RepldsClient, token *repldspb.Vector) (repldspb.Replds_WatchClient, error) {
	opening := time.AfterFunc(f.cfg.IdleTimeout, cancel)
	stream, err := client.Watch(sctx, &repldspb.WatchRequest{Prefix: f.cfg.Prefix, Token: token},
		grpc.MaxCallRecvMsgSize(maxRecvMsg))
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
func startReceiver(ctx context.Context, stream repldspb.Replds_WatchClient) *receiver {
	r := &receiver{msgs: make(chan recvResult)}
	r.wg.Go(func() {
		for {
			r.waiting.Store(time.Now().UnixNano())
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
	idle := time.NewTimer(f.cfg.IdleTimeout)
	defer idle.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var due <-chan time.Time
		if timed != nil {
			if next, ok := timed.Due(); ok {
				timer.Reset(time.Until(next))
				due = timer.C
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
		case <-idle.C:
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
func (f *Follower) silence(rcv *receiver, idle *time.Timer) error {
	wait := f.cfg.IdleTimeout
	if since := rcv.waiting.Load(); since != 0 {
		silent := time.Since(time.Unix(0, since))
		if silent >= f.cfg.IdleTimeout {
			return fmt.Errorf("%w: nothing for %s", errIdle, silent.Round(time.Millisecond))
		}
		wait -= silent
	}
	idle.Reset(wait)
	return nil
}
