package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MinInterval is the shortest interval an "every" schedule may have.
const MinInterval = time.Second

// Schedule says when a job's runs are due. The zero Schedule is never due.
type Schedule struct {
	expr  string
	every time.Duration
	cron  cron.Schedule
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a schedule: "every DURATION" (Go duration syntax,
// at least MinInterval: "every 15m", "every 1h30m"), a descriptor
// ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@midnight"), or
// five cron fields ("30 2 * * *": minute, hour, day of month, month, day
// of week). Times are UTC. "every" schedules are aligned to the Unix
// epoch, so every server computes the same due times and a runner that
// takes a job over keeps its rhythm.
func ParseSchedule(expr string) (Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return Schedule{}, errors.New("empty schedule")
	}
	if rest, ok := strings.CutPrefix(expr, "every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return Schedule{}, fmt.Errorf("schedule %q: %v", expr, err)
		}
		if d < MinInterval {
			return Schedule{}, fmt.Errorf("schedule %q: interval below %s", expr, MinInterval)
		}
		return Schedule{expr: expr, every: d}, nil
	}
	if strings.HasPrefix(expr, "@every") || strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return Schedule{}, fmt.Errorf("schedule %q: write intervals as \"every 15m\"; schedules are UTC", expr)
	}
	if !strings.HasPrefix(expr, "@") && len(strings.Fields(expr)) != 5 {
		return Schedule{}, fmt.Errorf("schedule %q: want 5 cron fields (minute hour day-of-month month day-of-week), \"@hourly\"-style, or \"every 15m\"", expr)
	}
	c, err := cronParser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %v", expr, err)
	}
	return Schedule{expr: expr, cron: c}, nil
}

// IsZero reports whether s is the zero Schedule (never due).
func (s Schedule) IsZero() bool { return s.every == 0 && s.cron == nil }

// Next returns the first due time strictly after t, or the zero time for
// the zero Schedule.
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		n := t.UnixNano()
		d := int64(s.every)
		return time.Unix(0, (n/d+1)*d).UTC()
	case s.cron != nil:
		return s.cron.Next(t.UTC())
	}
	return time.Time{}
}

// Prev returns the last due time at or before t (the zero time if none
// can be found within a year), so that a runner that took a job over can
// tell whether a run was missed.
func (s Schedule) Prev(t time.Time) time.Time {
	if s.every > 0 {
		n := t.UnixNano()
		d := int64(s.every)
		return time.Unix(0, n/d*d).UTC()
	}
	if s.cron == nil {
		return time.Time{}
	}
	// Step back until a due time falls in the window: cron schedules have
	// no inverse, but due times of real schedules are at most a year apart.
	for _, back := range []time.Duration{time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 366 * 24 * time.Hour} {
		var last time.Time
		for due := s.cron.Next(t.Add(-back).UTC()); !due.After(t); due = s.cron.Next(due) {
			last = due
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}

// String returns the schedule as written.
func (s Schedule) String() string { return s.expr }
