package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/replds/replds/strictjson"
)

// States a job's status reports.
const (
	StateIdle    = "idle"    // waiting for its next run
	StateRunning = "running" // a run is in progress
	StatePaused  = "paused"  // the spec says paused: nothing runs
	StateFailed  = "failed"  // the last run failed; the next is scheduled
	StateStopped = "stopped" // stopped on request (replication)
)

// Run describes one run of a job.
type Run struct {
	// ID names the run's result where there is one (a backup's id).
	ID       string    `json:"id,omitempty"`
	Kind     string    `json:"kind,omitempty"` // "full", "incremental", "verify", ...
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitzero"`
	Duration string    `json:"duration,omitempty"`
	Nodes    uint64    `json:"nodes"`
	Bytes    uint64    `json:"bytes"`
	Error    string    `json:"error,omitempty"`
	// Note says what a reader should know ("no changes since the parent").
	Note string `json:"note,omitempty"`
}

// Status is the JSON a job's runner publishes at /_replds/status/KIND/NAME.
// Detail holds what is specific to the kind (a replication's resume token
// and lag, a backup's verification results).
type Status struct {
	Job         string          `json:"job"`
	Runner      string          `json:"runner"`
	State       string          `json:"state"`
	Updated     time.Time       `json:"updated"`
	Current     *Run            `json:"current,omitempty"`
	Last        *Run            `json:"last,omitempty"`
	LastSuccess time.Time       `json:"last_success,omitzero"`
	Next        time.Time       `json:"next,omitzero"`
	Runs        uint64          `json:"runs"`
	Skips       uint64          `json:"skips"`
	Failures    uint64          `json:"failures"`
	Error       string          `json:"error,omitempty"`
	Detail      json.RawMessage `json:"detail,omitempty"`
}

func marshalStatus(st Status) ([]byte, error) {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("jobs: status: %w", err)
	}
	return append(data, '\n'), nil
}

// DecodeSpec decodes a job's JSON spec into v (a pointer to a struct)
// strictly (see strictjson.Decode); errors start with "spec: ".
func DecodeSpec(data []byte, v any) error {
	if err := strictjson.Decode(data, v); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return nil
}

// ParseStatus decodes a status node's data.
func ParseStatus(data []byte) (Status, error) {
	var st Status
	err := json.Unmarshal(data, &st)
	return st, err
}
