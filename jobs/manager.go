package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/replds/replds/nodepath"
)

// Def is a job definition as the tree holds it: the node
// /_replds/jobs/Kind/Name, its data (the spec) and version.
type Def struct {
	Kind, Name string
	Spec       []byte
	Version    uint64
}

// Path returns the definition's node path.
func (d Def) Path() string { return DefPath(d.Kind, d.Name) }

// DefPath returns the path of the definition of job kind/name.
func DefPath(kind, name string) string { return nodepath.Jobs + "/" + kind + "/" + name }

// RequestPath returns the path of the request node of job kind/name: a
// leaf clients write to ask the job's runner, whoever it is, for something
// now (run, stop).
func RequestPath(kind, name string) string { return nodepath.Requests + "/" + kind + "/" + name }

// ErrPermission is wrapped by a Kind's Validate when the writer of a
// definition lacks rights the job would use: the server then refuses the
// write as permission denied rather than as invalid.
var ErrPermission = errors.New("jobs: permission denied")

// StatusPath returns the path of the status node of job kind/name.
func StatusPath(kind, name string) string { return nodepath.Status + "/" + kind + "/" + name }

// ParseDefPath splits a definition path /_replds/jobs/KIND/NAME. It fails
// for any other shape, naming what is wrong.
func ParseDefPath(p string) (kind, name string, err error) {
	return parsePath(p, nodepath.Jobs)
}

// ParseRequestPath splits a request path /_replds/requests/KIND/NAME as
// ParseDefPath does a definition's.
func ParseRequestPath(p string) (kind, name string, err error) {
	return parsePath(p, nodepath.Requests)
}

func parsePath(p, under string) (kind, name string, err error) {
	rest, ok := strings.CutPrefix(p, under+"/")
	if !ok {
		return "", "", fmt.Errorf("%s is not under %s/", nodepath.Quote(p), under)
	}
	kind, name, ok = strings.Cut(rest, "/")
	if !ok || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("job path %s: want %s/KIND/NAME", nodepath.Quote(p), under)
	}
	if err := ValidateName(name); err != nil {
		return "", "", err
	}
	return kind, name, nil
}

// ValidateName checks a job name: 1 to 64 letters, digits, '-', '_' or
// '.', starting with a letter or digit. Names appear in paths, metric
// labels and target directories, so they are kept plain.
func ValidateName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("job name %q: want 1 to 64 characters", name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("job name %q: letters, digits, '-', '_' and '.' only, starting with a letter or digit", name)
		}
	}
	return nil
}

// Kind is one kind of job (backup, replicate).
type Kind interface {
	// Name is the kind's segment in job paths ("backup").
	Name() string
	// Validate checks a spec written by identity ("" without TLS) for job
	// name and returns the spec to store, which may record facts such as
	// the defining identity. It must name the offending field in its
	// error (wrapping ErrPermission when identity lacks a right the job
	// would use), and must not block. It may be called concurrently.
	Validate(identity, name string, spec []byte) ([]byte, error)
	// ValidateRequest checks the data of a request node written by
	// identity for job name, naming the offending field.
	ValidateRequest(identity, name string, data []byte) error
	// Run runs the job until ctx is cancelled (return ctx.Err() or nil),
	// or until it cannot go on (an error: the Manager retries with
	// backoff while it still owns the job). It publishes progress through
	// job.Publish.
	Run(ctx context.Context, job Job) error
}

// Request is the content of a job's request node (RequestPath), as the
// tree holds it. Version orders requests: a Kind records the last it
// handled in its status, so that a new runner does not repeat it.
type Request struct {
	Data    []byte
	Version uint64
}

// Job is what a Kind's Run gets: the definition, where to publish status,
// and a logger.
type Job struct {
	Def
	// Runner is this server's member name.
	Runner string
	// Previous is the job's status node as this server held it when the
	// instance started (zero if none): the counters and resume points of
	// the runner before.
	Previous Status
	// Requests delivers the job's request node when it changes, and once
	// at start if there is one; only the latest undelivered one is kept.
	Requests <-chan Request
	// Publish writes the job's status node; Run calls it at every state
	// change. It fills Job, Runner and Updated.
	Publish func(ctx context.Context, st Status) error
	Log     *slog.Logger
}

// StatusWriter writes a status node through the server's internal write
// path. It must be safe for concurrent use.
type StatusWriter func(ctx context.Context, path string, data []byte) error

// Config configures a Manager.
type Config struct {
	// Self is this server's member name, as Owner sees it.
	Self string
	// Kinds are the kinds of job this server can run.
	Kinds []Kind
	// WriteStatus publishes status nodes.
	WriteStatus StatusWriter
	// ReadStatus returns the data of a status node, if there is one (nil
	// = none).
	ReadStatus func(path string) ([]byte, bool)
	// Logger receives the manager's logs; nil = slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// RetryMin and RetryMax bound the backoff after a failed Run
	// (defaults 1 s and 1 min).
	RetryMin, RetryMax time.Duration
	// Settle is how long an instance waits before its first Run, so that
	// a view of the membership that the cluster is about to correct (a
	// member leaving, joining or turning ready) stops it before it acts
	// or publishes: two servers then rarely run one job at once, and the
	// status node names the runner that stays. Default 1 s; negative: none.
	Settle time.Duration
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Self == "" {
		return errors.New("jobs: config: empty Self")
	}
	if c.WriteStatus == nil {
		return errors.New("jobs: config: nil WriteStatus")
	}
	seen := map[string]bool{}
	for _, k := range c.Kinds {
		if seen[k.Name()] {
			return fmt.Errorf("jobs: config: kind %q twice", k.Name())
		}
		seen[k.Name()] = true
	}
	return nil
}

// Manager starts and stops the jobs this server owns as definitions and
// membership change. Its methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	kinds map[string]Kind

	mu      sync.Mutex
	defs    map[string]Def // by path
	members []string
	running map[string]*instance // by path
	// stopping holds, by path, the done channel of the last instance
	// stopped there: the next instance of that path waits for it before
	// it runs (stops never wait under mu: a backup's cleanup may take a
	// while).
	stopping map[string]chan struct{}
	// requests holds the request nodes, by the path of their job's def.
	requests map[string]Request
	closed   bool
}

type instance struct {
	def    Def
	cancel context.CancelFunc
	// done is closed once this instance and the one it waited for (prev)
	// have returned.
	done chan struct{}
	prev chan struct{}
	req  chan Request
}

// offer hands r to the instance, replacing an undelivered older one.
func (in *instance) offer(r Request) {
	for {
		select {
		case in.req <- r:
			return
		default:
		}
		select {
		case <-in.req:
		default:
		}
	}
}

// New returns a Manager that runs nothing until SetDefs and SetMembers.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Minute
	}
	if cfg.Settle == 0 {
		cfg.Settle = time.Second
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "jobs"),
		kinds:    map[string]Kind{},
		defs:     map[string]Def{},
		running:  map[string]*instance{},
		stopping: map[string]chan struct{}{},
		requests: map[string]Request{},
	}
	for _, k := range cfg.Kinds {
		m.kinds[k.Name()] = k
	}
	return m, nil
}

// Kind returns the registered kind called name.
func (m *Manager) Kind(name string) (Kind, bool) {
	k, ok := m.kinds[name]
	return k, ok
}

// SetDefs replaces the set of job definitions (every live node under
// /_replds/jobs/ of a known kind) and starts or stops jobs to match.
func (m *Manager) SetDefs(defs []Def) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.defs = make(map[string]Def, len(defs))
	for _, d := range defs {
		m.defs[d.Path()] = d
	}
	m.reconcileLocked()
}

// SetRequest records the request node of job kind/name (nil data: the
// node is gone) and hands it to the instance running here, if any.
func (m *Manager) SetRequest(kind, name string, r Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := DefPath(kind, name)
	if r.Data == nil {
		delete(m.requests, p)
		return
	}
	if old, ok := m.requests[p]; ok && old.Version >= r.Version {
		return
	}
	m.requests[p] = r
	if in, ok := m.running[p]; ok {
		in.offer(r)
	}
}

// SetMembers replaces the live, ready members (this server included when
// it is ready) and moves jobs to match.
func (m *Manager) SetMembers(members []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = slices.Sorted(slices.Values(members))
	m.reconcileLocked()
}

// Running returns the paths of the jobs this server runs now, sorted.
func (m *Manager) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.running))
	for p := range m.running {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Close stops every job and waits for them. It is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	var wait []chan struct{}
	for p, in := range m.running {
		in.cancel()
		wait = append(wait, in.done)
		delete(m.running, p)
	}
	for p, done := range m.stopping {
		wait = append(wait, done)
		delete(m.stopping, p)
	}
	m.mu.Unlock()
	for _, done := range wait {
		<-done
	}
}

// reconcileLocked stops what this server should no longer run and starts
// what it should. Stopping cancels the instance and does not wait for it
// (a backup's cleanup may take a while, and mu would block every other
// job meanwhile); the next instance of that path waits for it before its
// first Run, so one job never runs twice here.
func (m *Manager) reconcileLocked() {
	if m.closed {
		return
	}
	self := slices.Contains(m.members, m.cfg.Self)
	for p, in := range m.running {
		d, ok := m.defs[p]
		if ok && self && Owner(p, m.members) == m.cfg.Self && d.Version == in.def.Version {
			continue
		}
		in.cancel()
		m.stopping[p] = in.done
		delete(m.running, p)
		m.log.Info("job stopped here", "job", p, "reason", stopReason(ok, self, d, in.def))
	}
	if !self {
		return
	}
	for p, d := range m.defs {
		if _, ok := m.running[p]; ok {
			continue
		}
		k, ok := m.kinds[d.Kind]
		if !ok || Owner(p, m.members) != m.cfg.Self {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{def: d, cancel: cancel, done: make(chan struct{}), prev: m.stopping[p], req: make(chan Request, 1)}
		delete(m.stopping, p)
		if r, ok := m.requests[p]; ok {
			in.offer(r)
		}
		m.running[p] = in
		m.log.Info("job starting here", "job", p, "version", d.Version)
		go m.run(ctx, k, in)
	}
}

func stopReason(defined, self bool, d, old Def) string {
	switch {
	case !defined:
		return "deleted"
	case !self:
		return "this server is not ready"
	case d.Version != old.Version:
		return "spec changed"
	}
	return "another server owns it"
}

// run runs one instance, retrying failures with backoff until cancelled.
func (m *Manager) run(ctx context.Context, k Kind, in *instance) {
	defer func() {
		if in.prev != nil {
			<-in.prev
		}
		close(in.done)
	}()
	if in.prev != nil {
		// The instance stopped here before still winds down.
		select {
		case <-in.prev:
		case <-ctx.Done():
			return
		}
	}
	job := Job{
		Def:      in.def,
		Runner:   m.cfg.Self,
		Requests: in.req,
		Log:      m.log.With("job", in.def.Path()),
	}
	if m.cfg.ReadStatus != nil {
		if data, ok := m.cfg.ReadStatus(StatusPath(in.def.Kind, in.def.Name)); ok {
			if st, err := ParseStatus(data); err == nil {
				job.Previous = st
			} else {
				job.Log.Warn("previous status unreadable; counters start again", "err", err)
			}
		}
	}
	job.Publish = func(ctx context.Context, st Status) error {
		st.Job, st.Runner, st.Updated = in.def.Kind+"/"+in.def.Name, m.cfg.Self, m.cfg.Now().UTC()
		data, err := marshalStatus(st)
		if err != nil {
			return err
		}
		return m.cfg.WriteStatus(ctx, StatusPath(in.def.Kind, in.def.Name), data)
	}
	if m.cfg.Settle > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.cfg.Settle):
		}
	}
	backoff := m.cfg.RetryMin
	for {
		start := m.cfg.Now()
		err := k.Run(ctx, job)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			job.Log.Info("job ended")
			<-ctx.Done()
			return
		}
		if m.cfg.Now().Sub(start) > m.cfg.RetryMax {
			backoff = m.cfg.RetryMin
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		job.Log.Warn("job failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, m.cfg.RetryMax)
	}
}
