package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/certs"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// Applier applies nodes that keep their own versions, origins and seqs,
// then raises the vector by adv (server.Writer.ApplyAdvance). It must be
// safe for concurrent use; it returns how many nodes changed the store.
type Applier interface {
	ApplyAdvance(ctx context.Context, nodes []store.Node, adv []store.Advance) (int, error)
	// Write stores writes stamped by this server (the deletes of nodes a
	// complete replay no longer holds).
	Write(ctx context.Context, ws []store.Write) ([]store.Node, error)
}

// Config is what the replicate Kind needs of its server.
type Config struct {
	// Writer applies the replicated nodes (server.Writer).
	Writer Applier
	// Walk walks the local store's nodes under a prefix (store.Walk): at
	// the end of a complete replay, the replicated nodes it did not bring
	// are deleted.
	Walk func(prefix string, fn func(path string, m store.Meta) bool)
	// Vector returns the local store's version vector (store.Vector): a
	// new runner resumes from the lower of its token and what this server
	// holds, so that nothing its predecessor applied but this server has
	// not received yet is skipped.
	Vector func() store.Vector
	// Allowed reports whether identity may do op on path under the ACLs in
	// force here (server.Allowed).
	Allowed func(identity string, op acl.Op, path string) bool
	// ClusterOrigins returns the origins of this cluster's servers
	// (server.ClusterOrigins): their writes are never brought back from
	// the source. It may return the origins it found with an error.
	ClusterOrigins func(ctx context.Context) ([]uint64, error)
	// Metrics, when set, receives the jobs' counters and lag.
	Metrics *Metrics
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// RetryWait is how long a failed job waits before it follows again;
	// 0 = 5 s.
	RetryWait time.Duration
	// PublishEvery bounds how often the status node is written while
	// pages are applied; 0 = 250 ms.
	PublishEvery time.Duration
	// RefreshEvery is how often the status node is written even when
	// nothing changed: runner views can briefly disagree, and the final
	// status of a runner that handed the job over must not stay the last
	// word; 0 = 10 s.
	RefreshEvery time.Duration
	// LagEvery is how often the runner asks the source server in use for
	// its vector, to measure the lag; 0 = 1 s.
	LagEvery time.Duration
	// AdvanceEvery bounds how often the local vector is raised to the
	// last bookmark (one commit each); 0 = 1 s.
	AdvanceEvery time.Duration
	// MinBackoff and MaxBackoff bound the follower's reconnection delays;
	// 0 = 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout is the follower's; 0 = follow.DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Writer == nil || c.Vector == nil || c.Walk == nil || c.Allowed == nil || c.ClusterOrigins == nil {
		return errors.New("replicate: config: Writer, Vector, Walk, Allowed and ClusterOrigins are required")
	}
	return nil
}

// New returns the replicate job kind.
func New(cfg Config) (jobs.Kind, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 5 * time.Second
	}
	if cfg.PublishEvery <= 0 {
		cfg.PublishEvery = 250 * time.Millisecond
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = 10 * time.Second
	}
	if cfg.LagEvery <= 0 {
		cfg.LagEvery = time.Second
	}
	if cfg.AdvanceEvery <= 0 {
		cfg.AdvanceEvery = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 10*time.Second)
	}
	return &kind{cfg: cfg}, nil
}

type kind struct{ cfg Config }

func (k *kind) Name() string { return Kind }

// Validate checks a definition and records its writer as Owner.
// Replicating into a prefix needs write on it here; in the source cluster
// the job is an ordinary client, whose certificate needs read there.
func (k *kind) Validate(identity, name string, data []byte) ([]byte, error) {
	s, err := ParseSpec(data)
	if err != nil {
		return nil, err
	}
	if !k.cfg.Allowed(identity, acl.Write, s.DestPrefix) {
		return nil, fmt.Errorf("%w: field \"dest_prefix\": %q may not write %s, so may not replicate into it", jobs.ErrPermission, identity, nodepath.Quote(s.DestPrefix))
	}
	s.Owner = identity
	return json.Marshal(s)
}

func (k *kind) ValidateRequest(identity, name string, data []byte) error {
	_, err := ParseRequest(data)
	return err
}

// Run runs the job until ctx ends: it follows the source and applies what
// comes, handles stop, abort and start requests, and publishes its status.
// A failure (the source refuses the job's identity, a TLS file is
// missing) is recorded in the status and tried again after RetryWait; Run
// returns only when ctx ends.
func (k *kind) Run(ctx context.Context, job jobs.Job) error {
	spec, err := ParseSpec(job.Spec)
	if err != nil {
		// Validated when written: a server of another version wrote it.
		job.Log.Error("replication job spec unusable here", "err", err)
		return nil
	}
	r := newRunner(k, job, spec)
	return r.run(ctx)
}

// dialOptions returns the options for the source cluster's servers: mutual
// TLS from the spec's files, or plaintext.
func dialOptions(s Spec, log *slog.Logger) ([]grpc.DialOption, error) {
	ka := grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 10 * time.Second})
	if s.TLSCert == "" {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), ka}, nil
	}
	rl, err := certs.NewReloader(certs.Files{Cert: s.TLSCert, Key: s.TLSKey, CA: s.TLSCA}, log)
	if err != nil {
		return nil, fmt.Errorf("source TLS files: %w", err)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(rl.ClientConfig(""))), ka}, nil
}
