package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// jobKinds holds the registered job kinds.
type jobKinds struct {
	mu    sync.RWMutex
	kinds map[string]jobs.Kind
}

func (j *jobKinds) get(kind string) jobs.Kind {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.kinds[kind]
}

func (j *jobKinds) all() []jobs.Kind {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := make([]jobs.Kind, 0, len(j.kinds))
	for _, k := range j.kinds {
		out = append(out, k)
	}
	return out
}

// RegisterJobKind makes clients able to define jobs of kind k, and this
// server able to run them: writes of nodepath.Jobs/<kind>/<name> are then
// checked by k.Validate, writes of nodepath.Requests/<kind>/<name> by
// k.ValidateRequest, and once Start has run, the jobs this server owns
// (jobs.Owner) run here. Without a registered kind, such writes and
// deletes are refused. Register kinds before Start; servers of one
// cluster should register the same kinds.
//
// Validators run inside the Store RPC, once per node of the batch, before
// anything is written: they must not write to the server, and should
// return quickly. An error wrapping jobs.ErrPermission refuses the write
// with PermissionDenied (a job must not give its writer rights it lacks;
// see Allowed), any other with InvalidArgument and the error's text.
func (s *Server) RegisterJobKind(k jobs.Kind) error {
	kind := k.Name()
	if strings.Contains(kind, "/") || nodepath.Validate(nodepath.Jobs+"/"+kind) != nil {
		return fmt.Errorf("server: job kind %q: want one path segment", kind)
	}
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	if _, dup := s.jobs.kinds[kind]; dup {
		return fmt.Errorf("server: job kind %q registered twice", kind)
	}
	if s.jobs.kinds == nil {
		s.jobs.kinds = map[string]jobs.Kind{}
	}
	s.jobs.kinds[kind] = k
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
	var under string
	switch {
	case nodepath.Under(w.Path, nodepath.Jobs):
		under = nodepath.Jobs
	case nodepath.Under(w.Path, nodepath.Requests):
		under = nodepath.Requests
	default:
		return w, fmt.Errorf("%w: %s is written by the servers only", ErrPermission, nodepath.Quote(w.Path))
	}
	kind, name, ok := strings.Cut(strings.TrimPrefix(w.Path[len(under):], "/"), "/")
	if !ok || strings.Contains(name, "/") {
		return w, fmt.Errorf("%w %s: want a leaf %s/KIND/NAME", errInvalidJob, nodepath.Quote(w.Path), under)
	}
	k := s.jobs.get(kind)
	if k == nil {
		return w, fmt.Errorf("%w %s: unknown job kind %q", errInvalidJob, nodepath.Quote(w.Path), kind)
	}
	if w.Delete {
		return w, nil
	}
	if err := jobs.ValidateName(name); err != nil {
		return w, fmt.Errorf("%w %s: %w", errInvalidJob, nodepath.Quote(w.Path), err)
	}
	var err error
	if under == nodepath.Jobs {
		w.Data, err = k.Validate(identity(ctx), name, w.Data)
	} else {
		err = k.ValidateRequest(identity(ctx), name, w.Data)
	}
	if errors.Is(err, jobs.ErrPermission) {
		why := strings.TrimPrefix(err.Error(), jobs.ErrPermission.Error()+": ")
		return w, fmt.Errorf("%w %s: %s", ErrPermission, nodepath.Quote(w.Path), why)
	}
	if err != nil {
		return w, fmt.Errorf("%w %s: %w", errInvalidJob, nodepath.Quote(w.Path), err)
	}
	return w, nil
}

// Allowed reports whether identity may do op on path under the ACLs in
// force (always true without ACLs). Job validators use it to check that a
// job gives its writer no rights it lacks.
func (s *Server) Allowed(identity string, op acl.Op, path string) bool {
	return s.sec.acls.Get().Check(identity, op, path)
}
