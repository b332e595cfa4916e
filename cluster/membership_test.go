package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/cluster"
)

// newMember starts a member named name on loopback that joins through the
// gRPC "addresses" in peers, which hellos resolves.
func newMember(t *testing.T, name string, hellos map[string]*cluster.Membership, peers ...string) *cluster.Membership {
	t.Helper()
	return newMemberWith(t, name, hellos, func(*cluster.Config) {}, peers...)
}

// newMemberWith is newMember with the configuration adjusted by adjust.
func newMemberWith(t *testing.T, name string, hellos map[string]*cluster.Membership, adjust func(*cluster.Config), peers ...string) *cluster.Membership {
	t.Helper()
	cfg := cluster.DefaultConfig(name, "127.0.0.1", 0)
	cfg.Profile = "local"
	cfg.Meta.GRPCAddr = "127.0.0.1:1" + name
	cfg.Peers = peers
	cfg.RejoinInterval = 100 * time.Millisecond
	cfg.Hello = func(ctx context.Context, peer string) (cluster.HelloInfo, error) {
		m, ok := hellos[peer]
		if !ok {
			return cluster.HelloInfo{}, fmt.Errorf("no peer %s", peer)
		}
		return cluster.HelloInfo{Name: m.Name(), GossipAddr: m.Addr()}, nil
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	adjust(&cfg)
	m, err := cluster.New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		m.Close()
	})
	return m
}

// waitFor waits, on m's change notifications and under a deadline, until
// cond holds for m's members.
func waitFor(t *testing.T, m *cluster.Membership, what string, cond func([]cluster.Member) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := m.Changed()
		members := m.Members()
		if cond(members) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: %s never happened; members %+v", m.Name(), what, members)
		}
	}
}

func member(ms []cluster.Member, name string) (cluster.Member, bool) {
	i := slices.IndexFunc(ms, func(m cluster.Member) bool { return m.Name == name })
	if i < 0 {
		return cluster.Member{}, false
	}
	return ms[i], true
}

func TestMembership_JoinReadyLeave(t *testing.T) {
	hellos := map[string]*cluster.Membership{}
	a := newMember(t, "2", hellos)
	hellos["a"] = a
	// b, the member that leaves, sorts before a by name: Members must
	// still list a first, as live.
	b := newMember(t, "1", hellos, "a")

	waitFor(t, a, "b alive", func(ms []cluster.Member) bool {
		m, ok := member(ms, "1")
		return ok && m.State == cluster.Alive && !m.Ready && m.GRPCAddr == "127.0.0.1:11"
	})
	if self, ok := member(a.Members(), "2"); !ok || !self.Self || self.State != cluster.Alive {
		t.Errorf("a's own entry = %+v (present %v), want alive, self", self, ok)
	}

	if err := b.SetReady(true, 5*time.Second); err != nil {
		t.Fatalf("SetReady: %v", err)
	}
	waitFor(t, a, "b ready", func(ms []cluster.Member) bool {
		m, ok := member(ms, "1")
		return ok && m.Ready
	})

	b.Close()
	waitFor(t, a, "b left", func(ms []cluster.Member) bool {
		m, ok := member(ms, "1")
		return ok && m.State == cluster.Left
	})
	if ms := a.Members(); ms[0].Name != "2" || ms[len(ms)-1].Name != "1" {
		t.Errorf("Members = %+v, want the live ones first", ms)
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := cluster.DefaultConfig("a", "127.0.0.1", 0)
	for _, tc := range []struct {
		name string
		edit func(*cluster.Config)
	}{
		{"no name", func(c *cluster.Config) { c.Name = "" }},
		{"bad port", func(c *cluster.Config) { c.BindPort = 1 << 16 }},
		{"bad profile", func(c *cluster.Config) { c.Profile = "wan" }},
		{"bad key", func(c *cluster.Config) { c.SecretKey = []byte("short") }},
		{"peers without hello", func(c *cluster.Config) { c.Peers = []string{"127.0.0.1:1"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); err == nil {
				t.Errorf("Validate() = nil, want an error")
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

// recorder is a slog.Handler that counts the records it gets once armed.
type recorder struct {
	mu    sync.Mutex
	armed bool
	after []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed {
		r.after = append(r.after, rec.Message)
	}
	return nil
}

// TestMembership_NothingLoggedAfterClose closes a membership whose join
// loop still runs (its caller has not stopped Run yet) and fails to join
// every millisecond: nothing may be logged once Close has returned.
func TestMembership_NothingLoggedAfterClose(t *testing.T) {
	rec := &recorder{}
	hellos := make(chan struct{}, 1)
	cfg := cluster.DefaultConfig("1", "127.0.0.1", 0)
	cfg.Profile = "local"
	cfg.Peers = []string{"127.0.0.1:1"}
	cfg.RejoinInterval = time.Millisecond
	cfg.Hello = func(context.Context, string) (cluster.HelloInfo, error) {
		select {
		case hellos <- struct{}{}:
		default:
		}
		return cluster.HelloInfo{}, errors.New("unreachable")
	}
	cfg.Logger = slog.New(rec)
	m, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	<-hellos
	m.Close()
	rec.mu.Lock()
	rec.armed = true
	rec.mu.Unlock()
	// Two more attempts: the first one's failure was logged (or not)
	// before the second's Hello.
	<-hellos
	<-hellos
	<-hellos
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.after) > 0 {
		t.Errorf("logged after Close: %q", rec.after)
	}
}

// A peer that cannot be joined is logged at warn once per error (not per
// attempt) and reported by LastJoinError until it joins.
func TestMembership_JoinFailuresReported(t *testing.T) {
	other := newMember(t, "other", nil)
	var mu sync.Mutex // guards fail, attempts and logs
	var logs strings.Builder
	fail, attempts := true, 0
	m := newMemberWith(t, "joiner", nil, func(cfg *cluster.Config) {
		cfg.Peers = []string{"db1.example.net:12100"}
		cfg.RejoinInterval = 5 * time.Millisecond
		cfg.Hello = func(ctx context.Context, peer string) (cluster.HelloInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			if fail {
				return cluster.HelloInfo{}, errors.New("x509: certificate is valid for db1.example.net, not localhost")
			}
			return cluster.HelloInfo{Name: other.Name(), GossipAddr: other.Addr()}, nil
		}
		cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := attempts
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d join attempts in 10 s", n)
		}
		time.Sleep(5 * time.Millisecond) // polling under the deadline
	}
	je, ok := m.LastJoinError()
	if !ok || je.Peer != "db1.example.net:12100" || !strings.Contains(je.Err, "certificate is valid for db1.example.net") {
		t.Errorf("LastJoinError() = %+v, %v; want the x509 error of db1.example.net:12100", je, ok)
	}
	mu.Lock()
	got := strings.Count(logs.String(), `level=WARN msg="join failed"`)
	mu.Unlock()
	if got != 1 {
		t.Errorf("%d warnings for 20 failed attempts with one error, want 1", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	waitFor(t, m, "other joined", func(ms []cluster.Member) bool {
		o, ok := member(ms, "other")
		return ok && o.State.Live()
	})
	// The join is recorded once Join has returned, after the member shows.
	for je, ok := m.LastJoinError(); ok; je, ok = m.LastJoinError() {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("LastJoinError() after joining = %+v, want none", je)
		}
		time.Sleep(5 * time.Millisecond) // polling under the deadline
	}
}

// lockedWriter writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A member that left is listed until ReapAfter, then reaped (Changed
// fires); Forget removes one at once, but never a live one.
func TestMembership_ReapAndForget(t *testing.T) {
	hellos := map[string]*cluster.Membership{}
	a := newMemberWith(t, "a", hellos, func(cfg *cluster.Config) { cfg.ReapAfter = 300 * time.Millisecond })
	hellos["a"] = a
	keep := newMember(t, "k", hellos) // ReapAfter 1 h
	hellos["k"] = keep
	b := newMember(t, "b", hellos, "a", "k")
	waitFor(t, a, "b alive on a", func(ms []cluster.Member) bool { m, ok := member(ms, "b"); return ok && m.State.Live() })
	waitFor(t, keep, "b alive on k", func(ms []cluster.Member) bool { m, ok := member(ms, "b"); return ok && m.State.Live() })
	if err := keep.Forget("b"); !errors.Is(err, cluster.ErrMemberLive) {
		t.Errorf("Forget of a live member: %v, want ErrMemberLive", err)
	}
	b.Close()
	waitFor(t, keep, "b left on k", func(ms []cluster.Member) bool { m, ok := member(ms, "b"); return ok && m.State == cluster.Left })
	waitFor(t, a, "b reaped on a", func(ms []cluster.Member) bool { _, ok := member(ms, "b"); return !ok })
	if _, ok := member(keep.Members(), "b"); !ok {
		t.Errorf("k (ReapAfter 1 h) no longer lists b")
	}
	if err := keep.Forget("b"); err != nil {
		t.Fatalf("Forget(b): %v", err)
	}
	if _, ok := member(keep.Members(), "b"); ok {
		t.Errorf("k lists b after Forget")
	}
	if err := keep.Forget("nope"); !errors.Is(err, cluster.ErrMemberUnknown) {
		t.Errorf("Forget of an unknown member: %v, want ErrMemberUnknown", err)
	}
}
