package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openInternal opens a store for white-box tests.
func openInternal(t *testing.T) *Store {
	t.Helper()
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "store.db"))
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.CheckConsistency(); err != nil {
			t.Errorf("consistency: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func writeReq(ws ...Write) *request {
	return writeReqCtx(context.Background(), ws...)
}

func writeReqCtx(ctx context.Context, ws ...Write) *request {
	total := 0
	for _, w := range ws {
		total += len(w.Data)
	}
	return writeRequest(ctx, ws, total)
}

// applyReq returns the request of Apply(nodes) without advances.
func applyReq(nodes ...Node) *request {
	total := 0
	for _, n := range nodes {
		total += len(n.Data)
	}
	return applyRequest(context.Background(), nodes, nil, total)
}

// TestCommitGroup_EarlyPublishStopsAtAWrite: in a group, the events of the
// Apply calls before any Write go out while the commit runs; a Write's,
// and everything after it, only once the commit is done.
func TestCommitGroup_EarlyPublishStopsAtAWrite(t *testing.T) {
	s := openInternal(t)
	sub := s.Subscribe(10)
	defer sub.Close()
	peer := func(path string, seq uint64) Node {
		return Node{Path: path, Meta: Meta{Version: 1 << 40, Origin: 42, Seq: seq}, Data: []byte("r")}
	}
	paths := func(ev Event) (out []string) {
		for _, n := range ev.Nodes {
			out = append(out, n.Path)
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		reqs        []*request
		early, late []string // paths of the events before and after the commit
	}{
		{"apply, write, apply",
			[]*request{applyReq(peer("/r1", 1)), writeReq(Write{Path: "/w1", Data: []byte("w")}), applyReq(peer("/r2", 2))},
			[]string{"/r1"}, []string{"/w1", "/r2"}},
		{"write, apply",
			[]*request{writeReq(Write{Path: "/w2", Data: []byte("w")}), applyReq(peer("/r3", 3))},
			nil, []string{"/w2", "/r3"}},
	} {
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		s.SetCommitHook(func() error {
			close(entered)
			<-release
			return nil
		})
		next := func() Event {
			select {
			case ev := <-sub.C():
				return ev
			case <-time.After(10 * time.Second):
				unblock() // let the commit end, and the store close
				t.Fatalf("%s: an event did not come", tc.name)
				return Event{}
			}
		}
		done := make(chan struct{})
		go func() {
			s.commitGroup(tc.reqs)
			close(done)
		}()
		<-entered
		var early []string
		for range tc.early {
			early = append(early, paths(next())...)
		}
		select {
		case ev := <-sub.C():
			early = append(early, paths(ev)...)
		default:
		}
		if fmt.Sprint(early) != fmt.Sprint(tc.early) {
			t.Errorf("%s: events during the commit = %v, want %v", tc.name, early, tc.early)
		}
		unblock()
		<-done
		var late []string
		for range tc.late {
			late = append(late, paths(next())...)
		}
		if fmt.Sprint(late) != fmt.Sprint(tc.late) {
			t.Errorf("%s: events after the commit = %v, want %v", tc.name, late, tc.late)
		}
		for _, r := range tc.reqs {
			if res := <-r.done; res.err != nil {
				t.Errorf("%s: %v", tc.name, res.err)
			}
		}
	}
	s.SetCommitHook(nil)
}

// TestCommitGroup_Isolation hands the committer's group function one group
// directly: each request sees the changes of the earlier ones, and one that
// fails is dropped alone.
func TestCommitGroup_Isolation(t *testing.T) {
	s := openInternal(t)
	sub := s.Subscribe(10)
	defer sub.Close()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	reqs := []*request{
		writeReq(Write{Path: "/a", Data: []byte("1")}),
		writeReq(Write{Path: "/a/b", Data: []byte("2")}), // /a is a leaf now
		writeReq(Write{Path: "/c", Data: []byte("3")}),
		writeReq(Write{Path: "/a", Data: []byte("1")}), // identical to request 0
		writeReqCtx(canceled, Write{Path: "/d"}),
		writeReq(Write{Path: "/a", Delete: true}, Write{Path: "/c", Data: []byte("4")}),
	}
	commits := s.CommitCount()
	s.commitGroup(reqs)
	if got := s.CommitCount() - commits; got != 1 {
		t.Errorf("group took %d commits, want 1", got)
	}
	wantSeqs := [][]uint64{{1}, nil, {2}, nil, nil, {3, 4}}
	for i, r := range reqs {
		res := <-r.done
		var seqs []uint64
		for _, n := range res.nodes {
			seqs = append(seqs, n.Seq)
		}
		switch i {
		case 1:
			if !errors.Is(res.err, ErrConflict) {
				t.Errorf("request %d: %v, want ErrConflict", i, res.err)
			}
		case 4:
			if !errors.Is(res.err, context.Canceled) {
				t.Errorf("request %d: %v, want context.Canceled", i, res.err)
			}
		default:
			if res.err != nil || len(seqs) != len(wantSeqs[i]) || (len(seqs) > 0 && seqs[0] != wantSeqs[i][0]) {
				t.Errorf("request %d: seqs %v, %v; want %v", i, seqs, res.err, wantSeqs[i])
			}
		}
	}
	for i, want := range []uint64{1, 2, 4} {
		ev := <-sub.C()
		if got := ev.Vector[s.Origin()]; got != want {
			t.Errorf("event %d vector %d, want %d", i, got, want)
		}
	}
	if _, err := s.Get("/a/b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(/a/b) = %v, want ErrNotFound", err)
	}
	if n, err := s.Get("/c"); err != nil || string(n.Data) != "4" {
		t.Errorf("Get(/c) = %q, %v, want 4", n.Data, err)
	}
}

// TestCommitGroup_Failure: a failed commit fails every request of the group
// (a request that failed on its own keeps its error) and changes nothing.
func TestCommitGroup_Failure(t *testing.T) {
	s := openInternal(t)
	s.SetCommitFailure(errors.New("boom"))
	reqs := []*request{
		writeReq(Write{Path: "/a", Data: []byte("1")}),
		writeReq(Write{Path: "/a/b", Data: []byte("2")}),
		writeReq(Write{Path: "/c", Data: []byte("3")}),
	}
	s.commitGroup(reqs)
	for i, want := range []string{"boom", "conflict", "boom"} {
		if res := <-reqs[i].done; res.err == nil || !contains(res.err.Error(), want) {
			t.Errorf("request %d: %v, want an error about %s", i, res.err, want)
		}
	}
	if s.Stats() != (Stats{}) || len(s.Vector()) != 0 || s.lastIssued != 0 {
		t.Errorf("failed group changed memory: %+v %v %d", s.Stats(), s.Vector(), s.lastIssued)
	}
	s.SetCommitFailure(nil)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
