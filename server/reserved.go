package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"replds/acl"
	"replds/nodepath"
	"replds/store"
)

// JobValidator checks a client's definition of a job of one kind: the spec
// written to nodepath.Jobs/<kind>/<name> by identity (the verified client
// certificate's name, "" in plain mode). It returns the data to store,
// which may differ from spec (for instance to record identity as the
// job's owner), or an error that names the offending field: the write is
// then refused with InvalidArgument and the error's text. An error
// wrapping ErrPermission refuses it with PermissionDenied instead (a job
// must not give its writer rights it lacks; see (*Server).Allowed).
//
// It runs inside the Store RPC, once per job in the batch, before anything
// is written: it must not write to the server, and should return quickly.
// It may be called concurrently. Deleting a job does not call it.
type JobValidator func(ctx context.Context, identity, name string, spec []byte) ([]byte, error)

// jobKinds holds the registered job kinds.
type jobKinds struct {
	mu    sync.RWMutex
	kinds map[string]JobValidator
}

func (j *jobKinds) get(kind string) JobValidator {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.kinds[kind]
}

// RegisterJobKind makes clients able to define jobs of kind: writes of
// nodepath.Jobs/<kind>/<name> are then checked by validate. Without a
// registered kind, such writes and deletes are refused. kind must be one
// path segment, registered once. It is safe to call at any time; servers
// of one cluster should register the same kinds.
func (s *Server) RegisterJobKind(kind string, validate JobValidator) error {
	if validate == nil || strings.Contains(kind, "/") || nodepath.Validate(nodepath.Jobs+"/"+kind) != nil {
		return fmt.Errorf("server: job kind %q: want one path segment and a validator", kind)
	}
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	if _, dup := s.jobs.kinds[kind]; dup {
		return fmt.Errorf("server: job kind %q registered twice", kind)
	}
	if s.jobs.kinds == nil {
		s.jobs.kinds = map[string]JobValidator{}
	}
	s.jobs.kinds[kind] = validate
	return nil
}

// checkReserved applies the rules of the reserved namespace to a client's
// write w (already allowed by the ACLs) and returns the write to make: a
// job definition's data as its kind's validator returned it. Only job
// definitions may be written by clients; everything else under
// nodepath.Reserved (status nodes, /_replds/healthz, and any path not yet
// given a meaning) is written by the servers alone.
func (s *Server) checkReserved(ctx context.Context, w store.Write) (store.Write, error) {
	if !nodepath.IsReserved(w.Path) {
		return w, nil
	}
	if !nodepath.Under(w.Path, nodepath.Jobs) {
		return w, fmt.Errorf("%w: %s is written by the servers only", ErrPermission, nodepath.Quote(w.Path))
	}
	kind, name, ok := strings.Cut(strings.TrimPrefix(w.Path[len(nodepath.Jobs):], "/"), "/")
	if !ok || strings.Contains(name, "/") {
		return w, fmt.Errorf("%w %s: a job is a leaf %s/KIND/NAME", errInvalidJob, nodepath.Quote(w.Path), nodepath.Jobs)
	}
	validate := s.jobs.get(kind)
	if validate == nil {
		return w, fmt.Errorf("%w %s: unknown job kind %q", errInvalidJob, nodepath.Quote(w.Path), kind)
	}
	if w.Delete {
		return w, nil
	}
	data, err := validate(ctx, identity(ctx), name, w.Data)
	if err != nil {
		if errors.Is(err, ErrPermission) {
			return w, err
		}
		return w, fmt.Errorf("%w %s: %w", errInvalidJob, nodepath.Quote(w.Path), err)
	}
	w.Data = data
	return w, nil
}

// Allowed reports whether identity may do op on path under the ACLs in
// force (always true without ACLs). Job validators use it to check that a
// job gives its writer no rights it lacks.
func (s *Server) Allowed(identity string, op acl.Op, path string) bool {
	return s.sec.acls.Get().Check(identity, op, path)
}
