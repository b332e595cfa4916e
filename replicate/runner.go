package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/replds/replds/follow"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/limits"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
	"github.com/replds/replds/wire"
)

// States a replication job's status reports.
const (
	StateStarting    = "starting"
	StateInitialCopy = "initial copy"
	StateFollowing   = "following"
	StateStopping    = "stopping"
	StateStopped     = jobs.StateStopped
	StatePaused      = jobs.StatePaused
	StateFailed      = jobs.StateFailed
)

// Detail is the replication-specific part of a job's status (Status.Detail).
type Detail struct {
	// Token is the resume token: the source's vector as of the last
	// bookmark whose batch is applied here. nil: an initial copy.
	Token *Token `json:"token,omitempty"`
	// TokenFor is what the token was made for (Spec.tokenFor): a spec
	// that changes the prefixes or the excludes makes the job copy again.
	TokenFor string `json:"token_for,omitempty"`
	// LastRequest is the version of the last request node handled.
	LastRequest uint64 `json:"last_request,omitempty"`
	// Stopped: a stop or abort request stopped the job; a start request
	// resumes it. StoppedBy is the version of that request.
	Stopped   bool   `json:"stopped,omitempty"`
	StoppedBy uint64 `json:"stopped_by,omitempty"`
	// StopAt, while a graceful stop is in progress, is the source's vector
	// when the runner got the request: the job stops once its token covers
	// it.
	StopAt map[string]uint64 `json:"stop_at,omitempty"`
	// Source is the source server in use.
	Source string `json:"source,omitempty"`
	// LagChanges is the source's writes (per its vector, as the source
	// server in use last answered) that the token does not cover yet.
	LagChanges uint64 `json:"lag_changes"`
	// LagSeconds bounds the age of the oldest source change not applied
	// yet: the time since the newest probe of the source's vector that
	// the token covers (every change before it is applied), 0 when caught
	// up. Under a steady stream of writes applied promptly it stays near
	// the probe interval; it grows while the job falls behind, and while
	// no source server answers.
	LagSeconds float64 `json:"lag_seconds"`
	// Received counts the nodes received from the source (excluded paths
	// included), Applied those that changed this server's store (a node
	// received again is a no-op under last-write-wins), Bytes the data
	// bytes received.
	Received uint64 `json:"received"`
	Applied  uint64 `json:"applied"`
	Bytes    uint64 `json:"bytes"`
	// Copied counts the nodes of the initial copy in progress.
	Copied uint64 `json:"copied,omitempty"`
	// Reconnects counts the sessions after the first; Errors the failed
	// sessions and failed runs.
	Reconnects uint64 `json:"reconnects"`
	Errors     uint64 `json:"errors"`
}

// Token is a resume token as the status node holds it: origins in hex.
type Token struct {
	Vector map[string]uint64 `json:"vector"`
	Scope  uint64            `json:"scope,omitempty"`
}

func tokenFromProto(v *repldspb.Vector) *Token {
	t := &Token{Vector: vecToJSON(wire.VectorFromProto(v)), Scope: v.GetScope()}
	return t
}

func (t *Token) proto() *repldspb.Vector {
	v := wire.VectorToProto(t.vector())
	v.Scope = t.Scope
	return v
}

func (t *Token) vector() store.Vector { return vecFromJSON(t.Vector) }

func vecToJSON(v store.Vector) map[string]uint64 {
	out := make(map[string]uint64, len(v))
	for o, s := range v {
		out[fmt.Sprintf("%016x", o)] = s
	}
	return out
}

func vecFromJSON(m map[string]uint64) store.Vector {
	v := make(store.Vector, len(m))
	for k, s := range m {
		if o, err := strconv.ParseUint(k, 16, 64); err == nil {
			v[o] = s
		}
	}
	return v
}

// errStopped ends a follow when a request stopped the job.
var errStopped = errors.New("replicate: stopped on request")

// runner is one instance of a replication job on its runner. The main
// goroutine (run) owns the status and handles requests; the follower's
// goroutine calls the Sink methods. mu guards what both touch.
type runner struct {
	k    *kind
	job  jobs.Job
	spec Spec
	log  *slog.Logger

	mu    sync.Mutex
	st    jobs.Status
	d     Detail
	dirty bool
	// published is when the status node was last written.
	published time.Time
	inFull    bool
	// seen holds, during a complete replay, the destination paths it
	// brought (live or deleted).
	seen map[string]struct{}
	// own are this cluster's origins, left out of the feed and never
	// advanced from a source's bookmark.
	own      map[uint64]bool
	ownAt    time.Time
	sessions int
	// advanced is the token last raised into the local vector, and when.
	advanced   *Token
	advancedAt time.Time
	// lag turns probes of the source's vector into the lag.
	lag lagTracker
}

// lagTracker bounds the age of the oldest source change a token lacks,
// from probes of the source's vector: every change before the newest
// probe the token covers is applied.
type lagTracker struct {
	// caughtUp is the time of the newest probe the token covers; probes
	// holds the newer ones, oldest first.
	caughtUp time.Time
	probes   []probe
}

// observe records the source's vector vec probed at now, and returns the
// changes tok lacks (own's origins left out) and the bound in seconds (0
// when tok covers vec).
func (l *lagTracker) observe(now time.Time, vec, tok store.Vector, own map[uint64]bool) (changes uint64, secs float64) {
	behind := func(v store.Vector) (n uint64) {
		for o, s := range v {
			if !own[o] && s > tok[o] {
				n += s - tok[o]
			}
		}
		return n
	}
	if l.probes = append(l.probes, probe{at: now, vec: vec}); len(l.probes) > maxProbes {
		l.probes = l.probes[1:]
	}
	for len(l.probes) > 0 && behind(l.probes[0].vec) == 0 {
		l.caughtUp, l.probes = l.probes[0].at, l.probes[1:]
	}
	if changes = behind(vec); changes > 0 {
		secs = now.Sub(l.caughtUp).Seconds()
	}
	return changes, secs
}

// since returns the seconds since the newest probe a token covered.
func (l *lagTracker) since(now time.Time) float64 { return now.Sub(l.caughtUp).Seconds() }

// probe is the source's vector as asked at a time.
type probe struct {
	at  time.Time
	vec store.Vector
}

// maxProbes bounds the probes a runner keeps while it is behind; the
// oldest go first, which leaves caughtUp, and so the bound, as it was.
const maxProbes = 128

func newRunner(k *kind, job jobs.Job, spec Spec) *runner {
	r := &runner{k: k, job: job, spec: spec, log: job.Log, st: job.Previous, own: map[uint64]bool{}}
	r.st.Error, r.st.Current = "", nil
	if len(job.Previous.Detail) > 0 {
		if err := json.Unmarshal(job.Previous.Detail, &r.d); err != nil {
			r.log.Warn("previous status detail unreadable; the job copies again", "err", err)
			r.d = Detail{}
		}
	}
	if r.d.TokenFor != spec.tokenFor() {
		r.d.Token, r.d.TokenFor = nil, spec.tokenFor()
	}
	r.lag.caughtUp = k.cfg.Now()
	return r
}

func (r *runner) now() time.Time { return r.k.cfg.Now() }

// setState records a state change and publishes it at once.
func (r *runner) setState(ctx context.Context, state, errText string) {
	r.mu.Lock()
	r.st.State, r.st.Error = state, errText
	r.dirty = true
	r.mu.Unlock()
	r.publish(ctx)
}

// publish writes the status node if something changed since the last
// write. Only the main goroutine calls it.
func (r *runner) publish(ctx context.Context) {
	r.mu.Lock()
	if !r.dirty && r.now().Sub(r.published) < r.k.cfg.RefreshEvery {
		r.mu.Unlock()
		return
	}
	r.dirty, r.published = false, r.now()
	st := r.st
	st.Detail, _ = json.Marshal(r.d)
	r.mu.Unlock()
	if r.k.cfg.Metrics != nil {
		r.k.cfg.Metrics.state(r.job.Name, st.State)
	}
	if err := r.job.Publish(ctx, st); err != nil && ctx.Err() == nil {
		r.log.Warn("status not published", "err", err)
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
	}
}

// publishFinal publishes once more when ctx has ended (the server hands
// the job over): the status must say where the job got to.
func (r *runner) publishFinal(ctx context.Context) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r.advance(pctx, true)
	r.publish(pctx)
}

// run is the job's life on this server.
func (r *runner) run(ctx context.Context) error {
	defer r.publishFinal(ctx)
	if r.spec.Paused {
		r.setState(ctx, StatePaused, "")
		r.idle(ctx, nil, func(jobs.Request) bool { return false })
		return nil
	}
	for ctx.Err() == nil {
		if r.d.Stopped {
			r.mu.Lock()
			r.d.StopAt, r.d.LagSeconds = nil, 0
			r.mu.Unlock()
			r.setState(ctx, StateStopped, "")
			if !r.waitStart(ctx) {
				return nil
			}
		}
		r.setState(ctx, StateStarting, "")
		err := r.follow(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errStopped):
			continue
		case err == nil:
			err = errors.New("replicate: follower ended")
		}
		r.mu.Lock()
		r.d.Errors++
		r.st.Failures++
		r.mu.Unlock()
		if r.k.cfg.Metrics != nil {
			r.k.cfg.Metrics.errors(r.job.Name)
		}
		r.log.Error("replication failed; retrying", "err", err, "in", r.k.cfg.RetryWait)
		r.setState(ctx, StateFailed, err.Error())
		if !r.waitRetry(ctx) {
			return nil
		}
	}
	return nil
}

// waitStart waits, stopped, for a start request; false when ctx ended.
func (r *runner) waitStart(ctx context.Context) bool {
	return r.idle(ctx, nil, func(req jobs.Request) bool {
		a, ok := r.request(req)
		return ok && a == ActionStart
	})
}

// waitRetry waits RetryWait after a failure, handling requests; false
// when ctx ended.
func (r *runner) waitRetry(ctx context.Context) bool {
	t := time.NewTimer(r.k.cfg.RetryWait)
	defer t.Stop()
	return r.idle(ctx, t.C, func(req jobs.Request) bool {
		if a, ok := r.request(req); ok && (a == ActionStop || a == ActionAbort) {
			// The source cannot be followed: a stop cannot wait for it.
			r.stopNow(req.Version)
			return true
		}
		return false
	})
}

// idle waits for ctx (false), the timer (true) or a request that handle
// says ends the wait (true), refreshing the status node meanwhile.
func (r *runner) idle(ctx context.Context, timer <-chan time.Time, handle func(jobs.Request) bool) bool {
	refresh := time.NewTicker(r.k.cfg.RefreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		case req := <-r.job.Requests:
			if handle(req) {
				return true
			}
		case <-refresh.C:
		}
		r.publish(ctx)
	}
}

// request decodes a new request and records it as handled.
func (r *runner) request(req jobs.Request) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Version <= r.d.LastRequest {
		return "", false // handled by this job already (an earlier runner)
	}
	r.d.LastRequest, r.dirty = req.Version, true
	q, err := ParseRequest(req.Data)
	if err != nil {
		r.log.Warn("request ignored", "err", err)
		return "", false
	}
	r.log.Info("request", "action", q.Action, "version", req.Version)
	if q.Action == ActionStart && r.d.Stopped {
		r.d.Stopped, r.d.StoppedBy = false, 0
	}
	return q.Action, true
}

func (r *runner) stopNow(version uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.d.Stopped, r.d.StoppedBy, r.d.StopAt, r.dirty = true, version, nil, true
}

// follow follows the source until ctx ends (nil), a request stops the job
// (errStopped), or the follower gives up (a permanent error: the source
// refuses the job's identity).
func (r *runner) follow(ctx context.Context) error {
	opts, err := dialOptions(r.spec, r.log)
	if err != nil {
		return err
	}
	clients := map[string]repldspb.RepldsClient{}
	for _, addr := range r.spec.Source {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fmt.Errorf("source %s: %w", addr, err)
		}
		defer conn.Close()
		clients[addr] = repldspb.NewRepldsClient(conn)
	}
	cfg := follow.DefaultConfig()
	cfg.Prefix = r.spec.SourcePrefix
	cfg.Servers = r.spec.Source
	cfg.MinBackoff, cfg.MaxBackoff = r.k.cfg.MinBackoff, r.k.cfg.MaxBackoff
	if r.k.cfg.IdleTimeout > 0 {
		cfg.IdleTimeout = r.k.cfg.IdleTimeout
	}
	cfg.Logger = r.log
	cfg.Source = func(addr string) follow.Source { return &source{r: r, addr: addr, c: clients[addr]} }
	f, err := follow.New(cfg, r)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	defer func() {
		cancel()
		<-done
	}()
	pub := time.NewTicker(r.k.cfg.PublishEvery)
	defer pub.Stop()
	lag := time.NewTicker(r.k.cfg.LagEvery)
	defer lag.Stop()
	pendingStop := uint64(0)
	if r.d.StopAt != nil {
		r.setState(ctx, StateStopping, "")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			done <- err // for the deferred wait
			if ctx.Err() != nil {
				return nil
			}
			return err
		case req := <-r.job.Requests:
			a, ok := r.request(req)
			switch {
			case ok && a == ActionAbort:
				r.stopNow(req.Version)
				return errStopped
			case ok && a == ActionStop:
				pendingStop = req.Version
				r.stopAt(ctx, clients, &pendingStop)
			}
		case <-lag.C:
			if pendingStop != 0 {
				r.stopAt(ctx, clients, &pendingStop)
			}
			r.measure(ctx, clients)
		case <-pub.C:
		}
		r.advance(ctx, false)
		if r.stopReached() {
			r.advance(ctx, true)
			return errStopped
		}
		r.publish(ctx)
	}
}

// stopAt asks the source server in use (or any) for its vector, the point
// a graceful stop waits for. Unreachable, the stop stays pending.
func (r *runner) stopAt(ctx context.Context, clients map[string]repldspb.RepldsClient, pending *uint64) {
	vec, addr, err := r.sourceVector(ctx, clients)
	if err != nil {
		r.log.Warn("stop: source vector unavailable; trying again", "err", err)
		return
	}
	r.mu.Lock()
	r.d.StopAt, r.d.StoppedBy, r.dirty = vecToJSON(vec), *pending, true
	r.st.State = StateStopping
	r.mu.Unlock()
	r.log.Info("stopping once the source's vector is applied", "source", addr)
	*pending = 0
}

// stopReached reports whether a graceful stop is complete: the token
// covers StopAt. It then marks the job stopped.
func (r *runner) stopReached() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.d.StopAt == nil || r.d.Token == nil || r.inFull {
		return false
	}
	tok := r.d.Token.vector()
	for o, s := range vecFromJSON(r.d.StopAt) {
		if tok[o] < s {
			return false
		}
	}
	r.d.Stopped, r.d.StopAt, r.dirty = true, nil, true
	r.log.Info("stopped: everything the source held when asked is applied")
	return true
}

// sourceVector returns the vector of the source server in use, or of the
// first that answers.
func (r *runner) sourceVector(ctx context.Context, clients map[string]repldspb.RepldsClient) (store.Vector, string, error) {
	r.mu.Lock()
	first := r.d.Source
	r.mu.Unlock()
	order := slices.Clone(r.spec.Source)
	if i := slices.Index(order, first); i > 0 {
		order[0], order[i] = order[i], order[0]
	}
	var errs []error
	for _, addr := range order {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := clients[addr].Status(sctx, &repldspb.StatusRequest{})
		cancel()
		if err == nil {
			return wire.VectorFromProto(resp.Vector), addr, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, "", errors.Join(errs...)
}

// measure updates the lag: the source's writes the token lacks, and how
// long the job has been behind.
func (r *runner) measure(ctx context.Context, clients map[string]repldspb.RepldsClient) {
	vec, _, err := r.sourceVector(ctx, clients)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// The source cannot be asked: the changes are unknown, but the
		// time since the job was last known caught up keeps growing.
		if secs := r.lag.since(r.now()); secs >= 1 || r.d.LagSeconds != 0 {
			r.d.LagSeconds, r.dirty = secs, true
			if m := r.k.cfg.Metrics; m != nil {
				m.lag(r.job.Name, r.d.LagChanges, secs)
			}
		}
		return
	}
	var tok store.Vector
	if r.d.Token != nil && !r.inFull {
		tok = r.d.Token.vector()
	}
	lag, secs := r.lag.observe(r.now(), vec, tok, r.own)
	if lag != r.d.LagChanges || secs != r.d.LagSeconds {
		r.d.LagChanges, r.d.LagSeconds, r.dirty = lag, secs, true
	}
	if m := r.k.cfg.Metrics; m != nil {
		m.lag(r.job.Name, lag, secs)
	}
}

// advance raises the local vector to the last applied bookmark for the
// source's origins (not this cluster's), at most every AdvanceEvery
// unless now: its seqs arrive with gaps (only the prefix), and without it
// digest sync among this cluster's servers would send them again every
// round.
func (r *runner) advance(ctx context.Context, now bool) {
	r.mu.Lock()
	tok := r.d.Token
	if tok == nil || tok == r.advanced || r.inFull || !now && r.now().Sub(r.advancedAt) < r.k.cfg.AdvanceEvery {
		r.mu.Unlock()
		return
	}
	var adv []store.Advance
	for o, s := range tok.vector() {
		if !r.own[o] {
			adv = append(adv, store.Advance{Origin: o, To: s})
		}
	}
	r.mu.Unlock()
	if _, err := r.k.cfg.Writer.ApplyAdvance(ctx, nil, adv); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("vector not advanced", "err", err)
		}
		return
	}
	r.mu.Lock()
	r.advanced, r.advancedAt = tok, r.now()
	r.mu.Unlock()
}

// refreshOwn learns this cluster's origins, at most every 10 s.
func (r *runner) refreshOwn(ctx context.Context) {
	r.mu.Lock()
	fresh := !r.ownAt.IsZero() && r.now().Sub(r.ownAt) < 10*time.Second
	r.mu.Unlock()
	if fresh {
		return
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	found, err := r.k.cfg.ClusterOrigins(octx)
	cancel()
	if err != nil {
		r.log.Warn("cluster origins: some members did not answer", "err", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range found {
		r.own[o] = true
	}
	if err == nil {
		r.ownAt = r.now()
	}
}

func (r *runner) ownOrigins() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.own))
}

// source is a follow.Source for one source server that leaves out this
// cluster's origins and records the server in use.
type source struct {
	r    *runner
	addr string
	c    repldspb.RepldsClient
}

var maxRecvMsg = limits.MaxMessage(limits.MaxNodeSize, limits.MaxBatchBytes)

func (s *source) Watch(ctx context.Context, req *repldspb.WatchRequest) (follow.Stream, error) {
	req.ExcludeOrigins = s.r.ownOrigins()
	s.r.mu.Lock()
	if s.r.d.Source != s.addr {
		s.r.d.Source, s.r.dirty = s.addr, true
	}
	s.r.mu.Unlock()
	return s.c.Watch(ctx, req, grpc.MaxCallRecvMsgSize(maxRecvMsg))
}
