package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	repldspb "github.com/replds/replds/proto"
)

// watchLimits bounds what Watch streams may hold: how many one connection
// and one identity may open, and the bytes of their messages queued for
// clients, server-wide. Safe for concurrent use.
//
// A message handed to gRPC stays in its buffers until the client takes it;
// gRPC lets a stream queue more only once all but 64 KiB of it is gone.
// So a stream holds at most its last message and the one it is sending:
// each is charged from when it is sent until the next Send returns (or
// the stream ends), and a Send that waits longer than the send timeout
// ends the stream.
type watchLimits struct {
	perConn, perID int
	memory         int64
	sendTimeout    time.Duration

	// queued is the bytes charged to the open streams.
	queued atomic.Int64

	mu     sync.Mutex
	conns  map[string]int // remote address -> open streams
	idents map[string]int // identity -> open streams
}

func (l *watchLimits) init(cfg *Config) {
	l.perConn, l.perID = cfg.MaxWatchPerConn, cfg.MaxWatchPerIdentity
	l.memory, l.sendTimeout = cfg.WatchMemory, cfg.WatchSendTimeout
	l.conns, l.idents = map[string]int{}, map[string]int{}
}

// Refusals of Watch streams, with the reason label of
// replds_refused_total.
var (
	errWatchPerConn  = status.Error(codes.ResourceExhausted, "too many Watch streams on this connection (--max-watch-per-connection); open another connection or close some")
	errWatchPerID    = status.Error(codes.ResourceExhausted, "too many Watch streams for this identity (--max-watch-per-identity)")
	errWatchMemory   = status.Error(codes.ResourceExhausted, "the server's memory for Watch streams is spent (--watch-memory); resume from the last bookmark later")
	errWatchTooSlowF = "client took no Watch message for %v (--watch-send-timeout); resume from the last bookmark"
)

// open counts a new stream of ctx's connection and identity id ("" in
// plain mode: not counted by identity), or refuses it. The caller calls the
// returned release when the stream ends.
func (l *watchLimits) open(ctx context.Context, id string) (release func(), reason string, err error) {
	conn := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		conn = p.Addr.String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perConn > 0 && conn != "" && l.conns[conn] >= l.perConn {
		return nil, "watch_per_connection", errWatchPerConn
	}
	if l.perID > 0 && id != "" && l.idents[id] >= l.perID {
		return nil, "watch_per_identity", errWatchPerID
	}
	if conn != "" {
		l.conns[conn]++
	}
	if id != "" {
		l.idents[id]++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		decr(l.conns, conn)
		decr(l.idents, id)
	}, "", nil
}

// decr decrements m[k], deleting it at zero, so that the maps hold only
// keys of open streams.
func decr(m map[string]int, k string) {
	if k == "" {
		return
	}
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// charge takes n bytes of the server-wide budget, or reports false.
func (l *watchLimits) charge(n int64) bool {
	if l.queued.Add(n) > l.memory {
		l.queued.Add(-n)
		return false
	}
	return true
}

func (l *watchLimits) uncharge(n int64) { l.queued.Add(-n) }

// watchSender sends a Watch stream's messages under the limits: each
// Send runs in a goroutine of the server's, so that a client that does not
// read costs the handler no more than the send timeout: the handler then
// ends the stream with ResourceExhausted, gRPC writes that status after
// what it already queued, and ends the stream, which ends the Send. The
// stream holds the charge of its last message until the next Send returns
// or close. Not safe for concurrent use (a stream sends from one
// goroutine).
type watchSender struct {
	repldspb.Replds_WatchServer
	s *Server
	// held is the charge of the last message sent.
	held int64
}

func (w *watchSender) Send(msg *repldspb.WatchResponse) error {
	l := &w.s.watches
	n := int64(proto.Size(msg))
	if !l.charge(n) {
		w.s.metrics.refused("watch_memory")
		return errWatchMemory
	}
	var (
		mu        sync.Mutex
		abandoned bool
		res       = make(chan error, 1)
	)
	started := w.s.goFunc(func() {
		err := w.Replds_WatchServer.Send(msg)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			// The handler has returned; the stream has ended.
			l.uncharge(n)
			return
		}
		res <- err
	})
	if !started { // the server is stopping: the stream ends soon anyway
		return w.sent(n, w.Replds_WatchServer.Send(msg))
	}
	timer := time.NewTimer(l.sendTimeout)
	defer timer.Stop()
	select {
	case err := <-res:
		return w.sent(n, err)
	case <-timer.C:
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case err := <-res: // done just now
		return w.sent(n, err)
	default:
	}
	abandoned = true
	w.s.metrics.refused("watch_slow_reader")
	return status.Errorf(codes.ResourceExhausted, errWatchTooSlowF, l.sendTimeout)
}

// sent moves the stream's charge to the message just sent.
func (w *watchSender) sent(n int64, err error) error {
	w.s.watches.uncharge(w.held)
	w.held = n
	return err
}

// close gives back the charge the stream holds.
func (w *watchSender) close() {
	w.s.watches.uncharge(w.held)
	w.held = 0
}
