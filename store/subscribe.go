package store

import "sync/atomic"

// Subscription delivers the store's events in commit order. A subscriber
// that falls behind by more than its buffer is dropped rather than allowed
// to block commits: its channel is closed and Overflowed reports true.
type Subscription struct {
	s          *Store
	c          chan Event
	closed     bool // guarded by s.subMu
	overflowed atomic.Bool
}

// Subscribe returns a subscription to every event published from now on
// (see Event), buffered for buf events (at least 1). Changes committed just
// before the call may be delivered too, and are then also visible in the
// store's state: a reader that subscribes first and reads the state second
// misses nothing. While a group of replicated changes published early
// commits, Subscribe waits for it. On a closed store the channel is closed at once. The caller
// must Close the subscription when done.
func (s *Store) Subscribe(buf int) *Subscription {
	sub := &Subscription{s: s, c: make(chan Event, max(buf, 1))}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subsClosed {
		sub.closed = true
		close(sub.c)
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

// C returns the event channel. It is closed when the subscription or the
// store closes, or the subscription overflows. Events are shared between
// subscribers: read-only.
func (sub *Subscription) C() <-chan Event { return sub.c }

// Close ends the subscription and closes its channel. It is idempotent.
func (sub *Subscription) Close() {
	sub.s.subMu.Lock()
	defer sub.s.subMu.Unlock()
	sub.closeLocked()
}

// Overflowed reports whether the store closed the channel because its buffer
// was full.
func (sub *Subscription) Overflowed() bool { return sub.overflowed.Load() }

// closeLocked closes the subscription; the caller holds s.subMu.
func (sub *Subscription) closeLocked() {
	if sub.closed {
		return
	}
	sub.closed = true
	delete(sub.s.subs, sub)
	close(sub.c)
}

// publish delivers events to every subscription without blocking,
// dropping the subscriptions that cannot take them all.
func (s *Store) publish(events []Event) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.publishLocked(events)
}

// publishLocked is publish for a caller that holds s.subMu.
func (s *Store) publishLocked(events []Event) {
	for sub := range s.subs {
	send:
		for _, ev := range events {
			select {
			case sub.c <- ev:
			default:
				sub.overflowed.Store(true)
				sub.closeLocked()
				s.log.Debug("subscriber overflowed", "buffer", cap(sub.c))
				break send
			}
		}
	}
}

// closeSubscriptions closes every subscription for Close.
func (s *Store) closeSubscriptions() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subsClosed = true
	for sub := range s.subs {
		sub.closeLocked()
	}
}
