package follow

import "time"

// Clock is the time a Follower reads and waits on: the real clock by
// default, a simulated one in seeded simulations. The follower calls it
// from Run's goroutine and from the goroutine receiving a stream; an
// implementation must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on the channel once d
	// has passed, as time.NewTimer does.
	NewTimer(d time.Duration) (Alarm, <-chan time.Time)
	// AfterFunc calls f on a goroutine of the clock's once d has passed,
	// as time.AfterFunc does.
	AfterFunc(d time.Duration, f func()) Alarm
}

// Alarm controls a timer of a Clock, with the meaning of time.Timer's
// methods (no stale value is received after Stop or Reset returns).
type Alarm interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// realClock is the Clock of the time package.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (Alarm, <-chan time.Time) {
	t := time.NewTimer(d)
	return t, t.C
}

func (realClock) AfterFunc(d time.Duration, f func()) Alarm { return time.AfterFunc(d, f) }
