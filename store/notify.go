package store

import "sync"

// notifier wakes the waiters of Written: a channel closed and replaced at
// each commit of this store's own writes. Its zero value is ready to use.
type notifier struct {
	mu sync.Mutex
	ch chan struct{} // nil until a waiter asks for it
}

// Written returns a channel that is closed once a Write that changed
// something has committed after the call, or the store took a new origin
// (Reincarnate): the store then holds new writes of its own origin, or a
// new origin of its own (see Changes). Take the channel before reading
// the state and wait on it afterwards, and no commit is missed. It never
// blocks, costs a commit nothing while nobody waits, and is not closed by
// Close: waiters also select on their own lifetime.
func (s *Store) Written() <-chan struct{} {
	n := &s.written
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// fire wakes the current waiters. It never blocks.
func (n *notifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
