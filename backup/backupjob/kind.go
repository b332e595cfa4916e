package backupjob

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// Config is what a backup Kind needs of its server.
type Config struct {
	// Store is the server's store, read by snapshots and deltas.
	Store *store.Store
	// Allowed reports whether identity may do op on path under the ACLs
	// in force (server.Allowed).
	Allowed func(identity string, op acl.Op, path string) bool
	// Metrics, when set, is told of every run's outcome.
	Metrics Metrics
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// RetryWait is how long a failed run waits before it is tried again
	// (at most the schedule's next due time); 0 = 30 s.
	RetryWait time.Duration
	// Grace is how old a backup without manifest must be before
	// retention removes it (a run in progress elsewhere may be writing
	// it); 0 = 1 h.
	Grace time.Duration
}

// Metrics receives the outcome of runs. Implementations must be safe for
// concurrent use and must not block.
type Metrics interface {
	// Run records a finished run of job (kind "full", "incremental",
	// "verify"): err nil on success.
	Run(job, kind string, took time.Duration, nodes, bytes uint64, err error)
	// Skip records a run skipped because one was in progress.
	Skip(job string)
}

// Detail is the backup-specific part of a job's status.
type Detail struct {
	// LastRequest is the version of the last request node handled.
	LastRequest uint64 `json:"last_request,omitempty"`
	// LastFull is the id of the newest full backup.
	LastFull string `json:"last_full,omitempty"`
	// Latest is the id of the newest complete backup.
	Latest string `json:"latest,omitempty"`
	// Verified is the result of the last verification.
	Verified *backup.Verification `json:"verified,omitempty"`
	// VerifiedID is the backup the last verification checked.
	VerifiedID string `json:"verified_id,omitempty"`
	// Deleted counts backups removed by retention so far.
	Deleted uint64 `json:"deleted,omitempty"`
}

// New returns the backup job kind.
func New(cfg Config) (jobs.Kind, error) {
	if cfg.Store == nil || cfg.Allowed == nil {
		return nil, fmt.Errorf("backupjob: config: Store and Allowed are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 30 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Hour
	}
	return &kind{cfg: cfg}, nil
}

type kind struct{ cfg Config }

func (k *kind) Name() string { return Kind }

// Validate checks a definition and records its writer as Owner and what
// the backup leaves out as Exclude. Backing up a prefix needs read on it.
func (k *kind) Validate(identity, name string, data []byte) ([]byte, error) {
	p, err := ParseSpec(data)
	if err != nil {
		return nil, err
	}
	if !k.cfg.Allowed(identity, acl.Read, p.Prefix) {
		return nil, fmt.Errorf("%w: %q may not read %s, so may not back it up", jobs.ErrPermission, identity, nodepath.Quote(p.Prefix))
	}
	p.Owner = identity
	p.Exclude = nil
	if nodepath.Under(nodepath.Reserved, p.Prefix) {
		if k.cfg.Allowed(identity, acl.Read, nodepath.Jobs) {
			p.Exclude = []string{nodepath.Requests, nodepath.Status}
		} else {
			p.Exclude = []string{nodepath.Reserved}
		}
	}
	return json.Marshal(p.Spec)
}

func (k *kind) ValidateRequest(identity, name string, data []byte) error {
	_, err := ParseRequest(data)
	return err
}

// Run runs the job until ctx ends: backups on the schedule (and on
// request), retention after each, verification on its own schedule. A
// failed run is recorded in the status and tried again; Run returns only
// when ctx ends or the spec cannot run at all.
func (k *kind) Run(ctx context.Context, job jobs.Job) error {
	p, err := ParseSpec(job.Spec)
	if err != nil {
		// Validated when written: a server of another version wrote it.
		job.Log.Error("backup job spec unusable here", "err", err)
		return nil
	}
	r := &runner{k: k, job: job, p: p, st: job.Previous, log: job.Log}
	r.st.Error, r.st.Current = "", nil
	if len(job.Previous.Detail) > 0 {
		if err := json.Unmarshal(job.Previous.Detail, &r.detail); err != nil {
			r.log.Warn("previous status detail unreadable", "err", err)
		}
	}
	if p.Paused {
		r.st.State, r.st.Next = jobs.StatePaused, time.Time{}
		return r.publish(ctx)
	}
	r.tgt, err = target.Open(ctx, p.Target)
	if err != nil {
		r.st.State, r.st.Error = jobs.StateFailed, err.Error()
		_ = r.publish(ctx)
		return err
	}
	return r.loop(ctx)
}
