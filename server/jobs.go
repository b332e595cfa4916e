package server

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// startJobs makes this server run the jobs it owns among those defined in
// the tree, when kinds are registered: a jobs.Manager fed with the
// definitions and requests (a store feed of nodepath.Jobs and
// nodepath.Requests) and with the live, ready members, publishing status
// through the Writer.
func (s *Server) startJobs() {
	kinds := s.jobs.all()
	if len(kinds) == 0 {
		return
	}
	m, err := jobs.New(jobs.Config{
		Self:        s.cfg.Name,
		Kinds:       kinds,
		WriteStatus: s.writeStatus,
		ReadStatus: func(path string) ([]byte, bool) {
			n, err := s.store.Get(path)
			return n.Data, err == nil
		},
		Logger: s.log,
	})
	if err != nil {
		s.log.Error("jobs not started", "err", err)
		return
	}
	s.jobMgr = m
	s.goFunc(func() { s.jobDefsLoop(m) })
	s.goFunc(func() { s.jobMembersLoop(m) })
}

// writeStatus publishes a job's status node through the Writer.
func (s *Server) writeStatus(ctx context.Context, path string, data []byte) error {
	_, err := s.Writer().Write(ctx, []store.Write{{Path: path, Data: data}})
	return err
}

// jobDefsLoop follows the definitions and requests in the store and hands
// them to m, until the server closes.
func (s *Server) jobDefsLoop(m *jobs.Manager) {
	for s.ctx.Err() == nil {
		err := s.followJobDefs(m)
		if s.ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
			return
		}
		s.log.Warn("job definitions: feed failed; following again", "err", err)
		select {
		case <-s.done:
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) followJobDefs(m *jobs.Manager) error {
	f, err := s.store.Feed(store.FeedOptions{Prefixes: []string{nodepath.Jobs, nodepath.Requests}})
	if err != nil {
		return err
	}
	defer f.Close()
	defs := map[string]jobs.Def{}
	caught, changed := false, false
	for {
		page, err := f.Next(s.ctx)
		if err != nil {
			return err
		}
		for _, n := range page.Nodes {
			if kind, name, err := jobs.ParseDefPath(n.Path); err == nil {
				if n.Deleted {
					delete(defs, n.Path)
				} else {
					defs[n.Path] = jobs.Def{Kind: kind, Name: name, Spec: n.Data, Version: n.Version}
				}
				changed = true
			} else if kind, name, err := jobs.ParseRequestPath(n.Path); err == nil {
				r := jobs.Request{Version: n.Version}
				if !n.Deleted {
					r.Data = n.Data
				}
				m.SetRequest(kind, name, r)
			}
		}
		caught = caught || page.Caught
		if caught && changed {
			m.SetDefs(slices.Collect(maps.Values(defs)))
			changed = false
		}
	}
}

// jobMembersLoop hands m the live, ready members whenever the membership
// changes, until the server closes.
func (s *Server) jobMembersLoop(m *jobs.Manager) {
	for {
		ch := s.mem.Changed()
		var names []string
		for _, mb := range s.mem.Members() {
			if mb.State.Live() && mb.Ready {
				names = append(names, mb.Name)
			}
		}
		m.SetMembers(names)
		select {
		case <-s.done:
			return
		case <-ch:
		}
	}
}

// JobsRunning returns the paths of the job definitions this server runs
// now, sorted (none without registered kinds).
func (s *Server) JobsRunning() []string {
	if s.jobMgr == nil {
		return nil
	}
	return s.jobMgr.Running()
}
