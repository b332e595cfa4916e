package backupjob

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"filippo.io/age"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
)

// Kind is the name of the job kind: definitions live at
// /_replds/jobs/backup/NAME.
const Kind = "backup"

// Spec is a backup job's definition, the JSON data of its node.
type Spec struct {
	// Prefix is the subtree backed up (default "/"). The servers' own
	// status and request nodes are never backed up.
	Prefix string `json:"prefix,omitempty"`
	// Target is where backups go: file:///dir or s3://bucket/prefix.
	Target string `json:"target"`
	// Schedule says when backups run (incrementals, and fulls when due).
	Schedule string `json:"schedule"`
	// Full says when a run is a full backup: a schedule ("@daily"), or
	// "every N" to make every (N+1)th run a full one. Default "@daily".
	Full string `json:"full,omitempty"`
	// Retain bounds what is kept in the target; nil keeps everything.
	Retain *Retain `json:"retain,omitempty"`
	// EncryptTo lists age X25519 recipients ("age1..."): files are
	// encrypted to them before they leave the server.
	EncryptTo []string `json:"encrypt_to,omitempty"`
	// Verify, when set, is the schedule of verifications of the newest
	// backup's chain.
	Verify string `json:"verify,omitempty"`
	// Paused stops every run until it is cleared.
	Paused bool `json:"paused,omitempty"`
	// Owner is the identity that wrote the definition, recorded by the
	// server: the job reads with its rights.
	Owner string `json:"owner,omitempty"`
	// Exclude lists prefixes under Prefix left out, recorded by the
	// server (the status and request nodes, and the reserved namespace
	// when the owner may not read it).
	Exclude []string `json:"exclude,omitempty"`
}

// Retain is a retention policy: keep the newest Fulls full backups with
// their incrementals, and/or every backup within a duration ("30d").
type Retain struct {
	Fulls  int    `json:"fulls,omitempty"`
	Within string `json:"within,omitempty"`
}

// plan is a Spec parsed.
type plan struct {
	Spec
	schedule, full, verify jobs.Schedule
	// fullEvery > 0: a full after that many incrementals.
	fullEvery int
	policy    backup.Policy
}

// ParseSpec decodes and checks a spec, naming the offending field. It
// does no I/O.
func ParseSpec(data []byte) (plan, error) {
	var p plan
	if err := jobs.DecodeSpec(data, &p.Spec); err != nil {
		return p, err
	}
	if p.Prefix == "" {
		p.Prefix = "/"
	}
	if err := nodepath.ValidatePrefix(p.Prefix); err != nil {
		return p, fmt.Errorf("spec: field \"prefix\": %w", err)
	}
	if nodepath.Under(p.Prefix, nodepath.Status) || nodepath.Under(p.Prefix, nodepath.Requests) {
		return p, fmt.Errorf("spec: field \"prefix\": %s is never backed up", nodepath.Quote(p.Prefix))
	}
	if err := checkTarget(p.Target); err != nil {
		return p, fmt.Errorf("spec: field \"target\": %w", err)
	}
	var err error
	if p.Schedule == "" {
		return p, errors.New(`spec: field "schedule": required (e.g. "every 15m", "@hourly", "30 2 * * *")`)
	}
	if p.schedule, err = jobs.ParseSchedule(p.Schedule); err != nil {
		return p, fmt.Errorf("spec: field \"schedule\": %w", err)
	}
	switch full := p.Full; {
	case full == "":
		p.full, _ = jobs.ParseSchedule("@daily")
	case strings.HasPrefix(full, "every ") && isInt(strings.TrimPrefix(full, "every ")):
		p.fullEvery, _ = strconv.Atoi(strings.TrimPrefix(full, "every "))
		if p.fullEvery < 0 {
			return p, fmt.Errorf("spec: field \"full\": %q: want a schedule or \"every N\" with N >= 0", full)
		}
		if p.fullEvery == 0 {
			p.fullEvery = -1 // every run is a full one
		}
	default:
		if p.full, err = jobs.ParseSchedule(full); err != nil {
			return p, fmt.Errorf("spec: field \"full\": %w (or \"every N\" incrementals)", err)
		}
	}
	if p.Retain != nil {
		if p.Retain.Fulls < 0 {
			return p, fmt.Errorf("spec: field \"retain.fulls\": %d: want 0 or more", p.Retain.Fulls)
		}
		p.policy.Fulls = p.Retain.Fulls
		if p.Retain.Within != "" {
			if p.policy.Within, err = backup.ParseWithin(p.Retain.Within); err != nil {
				return p, fmt.Errorf("spec: field \"retain.within\": %w", err)
			}
		}
	}
	for i, r := range p.EncryptTo {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			return p, fmt.Errorf("spec: field \"encrypt_to\"[%d]: %q is not an age X25519 recipient (age1...)", i, r)
		}
	}
	if p.Verify != "" {
		if p.verify, err = jobs.ParseSchedule(p.Verify); err != nil {
			return p, fmt.Errorf("spec: field \"verify\": %w", err)
		}
	}
	for i, e := range p.Exclude {
		if err := nodepath.ValidatePrefix(e); err != nil {
			return p, fmt.Errorf("spec: field \"exclude\"[%d]: %w", i, err)
		}
	}
	return p, nil
}

func isInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// checkTarget checks a target URL's shape (the target itself is opened by
// the runner, with its credentials).
func checkTarget(raw string) error {
	if raw == "" {
		return errors.New("required (file:///dir or s3://bucket/prefix)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.User != nil {
		return errors.New("credentials do not belong in the URL; the runner takes them from its environment or AWS configuration")
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" || u.Host != "" && u.Host != "localhost" {
			return fmt.Errorf("%q: want file:///absolute/dir", raw)
		}
	case "s3":
		if u.Host == "" {
			return fmt.Errorf("%q: want s3://bucket/prefix", raw)
		}
	default:
		return fmt.Errorf("%q: unknown scheme %q (want file or s3)", raw, u.Scheme)
	}
	return nil
}

// Request is the data of a backup job's request node.
type Request struct {
	// Run asks for a run now: "incremental" (or "" and full when due),
	// "full", or "verify".
	Run string `json:"run"`
}

// ParseRequest decodes a request node's data, naming the offending field.
func ParseRequest(data []byte) (Request, error) {
	var r Request
	if err := jobs.DecodeSpec(data, &r); err != nil {
		return r, errors.New("request: " + strings.TrimPrefix(err.Error(), "spec: "))
	}
	switch r.Run {
	case "", "incremental", "full", "verify":
		return r, nil
	}
	return r, fmt.Errorf(`request: field "run": %q: want "incremental", "full" or "verify"`, r.Run)
}
