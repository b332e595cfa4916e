package acl

import (
	"sync"
	"sync/atomic"
)

// Holder holds the current ACL of a rule file and replaces it on Reload
// (the server calls Reload on SIGHUP). Get is lock-free and safe to call
// from any goroutine, concurrently with Reload.
//
// A Holder with an empty path holds a nil *ACL: no ACLs configured,
// everything allowed. A nil *Holder behaves the same.
type Holder struct {
	path string
	cur  atomic.Pointer[ACL]

	// reloadMu serializes reloads so that two concurrent ones cannot store
	// their results out of order.
	reloadMu sync.Mutex
}

// NewHolder loads the rule file at path and returns a Holder for it; an
// error if the file cannot be loaded. With path "" it returns a Holder
// whose Get always returns nil (everything allowed).
func NewHolder(path string) (*Holder, error) {
	h := &Holder{path: path}
	if path == "" {
		return h, nil
	}
	a, err := Load(path)
	if err != nil {
		return nil, err
	}
	h.cur.Store(a)
	return h, nil
}

// Path returns the rule file's path, "" if none.
func (h *Holder) Path() string {
	if h == nil {
		return ""
	}
	return h.path
}

// Get returns the current ACL. It is nil when no rule file is configured;
// a nil *ACL allows everything. Callers that check many nodes for one
// request (a Watch batch) should call Get once and use the result, so that
// the batch is judged by one rule set.
func (h *Holder) Get() *ACL {
	if h == nil {
		return nil
	}
	return h.cur.Load()
}

// Reload reads the rule file again and, only if it parses, makes it the
// current ACL. On error the previous rules stay in force and the error is
// returned for the caller to report. With no rule file it does nothing.
func (h *Holder) Reload() error {
	if h == nil || h.path == "" {
		return nil
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	a, err := Load(h.path)
	if err != nil {
		return err
	}
	h.cur.Store(a)
	return nil
}
