package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/jobs"
)

func TestOwner(t *testing.T) {
	members := []string{"s1", "s2", "s3", "s4"}
	if got := jobs.Owner("/_replds/jobs/backup/x", nil); got != "" {
		t.Errorf("Owner(no members) = %q, want \"\"", got)
	}
	counts := map[string]int{}
	moved := 0
	for i := range 1000 {
		p := fmt.Sprintf("/_replds/jobs/backup/j%d", i)
		o := jobs.Owner(p, members)
		// Order of members does not matter.
		if o2 := jobs.Owner(p, []string{"s4", "s3", "s2", "s1"}); o2 != o {
			t.Fatalf("Owner(%s) = %q or %q depending on order", p, o, o2)
		}
		counts[o]++
		// Removing a member moves only its jobs.
		o3 := jobs.Owner(p, []string{"s1", "s2", "s4"})
		if o != "s3" && o3 != o {
			t.Fatalf("removing s3 moved %s from %s to %s", p, o, o3)
		}
		if o == "s3" {
			moved++
		}
	}
	for _, m := range members {
		if counts[m] < 180 || counts[m] > 320 {
			t.Errorf("member %s owns %d of 1000 jobs, want about 250", m, counts[m])
		}
	}
	if moved != counts["s3"] {
		t.Errorf("moved %d jobs, want the %d of s3", moved, counts["s3"])
	}
}

func TestParseSchedule(t *testing.T) {
	base := time.Date(2026, 12, 2, 10, 17, 30, 0, time.UTC)
	tests := []struct {
		expr       string
		next, prev time.Time
	}{
		{"every 15m", time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC), time.Date(2026, 12, 2, 10, 15, 0, 0, time.UTC)},
		{"every 1h", time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)},
		{"30 2 * * *", time.Date(2026, 12, 3, 2, 30, 0, 0, time.UTC), time.Date(2026, 12, 2, 2, 30, 0, 0, time.UTC)},
		{"0 3 1 * *", time.Date(2027, 1, 1, 3, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := jobs.ParseSchedule(tt.expr)
		if err != nil {
			t.Errorf("ParseSchedule(%q) error: %v", tt.expr, err)
			continue
		}
		if got := s.Next(base); !got.Equal(tt.next) {
			t.Errorf("%q.Next(%v) = %v, want %v", tt.expr, base, got, tt.next)
		}
		if got := s.Prev(base); !got.Equal(tt.prev) {
			t.Errorf("%q.Prev(%v) = %v, want %v", tt.expr, base, got, tt.prev)
		}
		if s.String() != tt.expr {
			t.Errorf("String() = %q, want %q", s.String(), tt.expr)
		}
	}
	for expr, want := range map[string]string{
		"":            "empty",
		"every":       "5 cron fields",
		"every 10ms":  "below",
		"every x":     "invalid duration",
		"* * * *":     "5 cron fields",
		"61 * * * *":  "61",
		"@every 1m":   "every 15m",
		"@fortnight":  "fortnight",
		"* * * * * *": "5 cron fields",
	} {
		if _, err := jobs.ParseSchedule(expr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSchedule(%q) = %v, want an error naming %q", expr, err, want)
		}
	}
}

func TestDecodeSpec(t *testing.T) {
	var s struct {
		Prefix string `json:"prefix"`
	}
	if err := jobs.DecodeSpec([]byte(`{"prefx": "/a"}`), &s); err == nil || err.Error() != `spec: unknown field "prefx" (known: prefix)` {
		t.Errorf("DecodeSpec(unknown field) = %v", err)
	}
}

func TestParseDefPath(t *testing.T) {
	kind, name, err := jobs.ParseDefPath("/_replds/jobs/backup/nightly-1")
	if err != nil || kind != "backup" || name != "nightly-1" {
		t.Errorf("ParseDefPath = %q, %q, %v", kind, name, err)
	}
	for _, p := range []string{"/_replds/jobs/backup", "/_replds/jobs/backup/a/b", "/data/x", "/_replds/jobs/backup/-x", "/_replds/jobs/backup/a b"} {
		if _, _, err := jobs.ParseDefPath(p); err == nil {
			t.Errorf("ParseDefPath(%q) = nil error", p)
		}
	}
}

// fakeKind records which jobs run; Run fails while fail is set.
type fakeKind struct {
	mu      sync.Mutex
	running map[string]int // path -> live instances
	starts  map[string]int
	fail    error
	// requests are the request data the instances received, in order.
	requests []string
}

func (k *fakeKind) Name() string { return "fake" }
func (k *fakeKind) Validate(id, name string, spec []byte) ([]byte, error) {
	return spec, nil
}
func (k *fakeKind) ValidateRequest(id, name string, data []byte) error { return nil }
func (k *fakeKind) Run(ctx context.Context, job jobs.Job) error {
	k.mu.Lock()
	k.running[job.Path()]++
	k.starts[job.Path()]++
	fail := k.fail
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.running[job.Path()]--
		k.mu.Unlock()
	}()
	if err := job.Publish(ctx, jobs.Status{State: jobs.StateIdle}); err != nil {
		return err
	}
	if fail != nil {
		return fail
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-job.Requests:
			k.mu.Lock()
			k.requests = append(k.requests, string(r.Data))
			k.mu.Unlock()
		}
	}
}

func (k *fakeKind) snapshot() (running, starts map[string]int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	running, starts = map[string]int{}, map[string]int{}
	for p, n := range k.running {
		if n != 0 {
			running[p] = n
		}
	}
	for p, n := range k.starts {
		starts[p] = n
	}
	return running, starts
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManager_RunsOwnedJobsOnce(t *testing.T) {
	kinds := map[string]*fakeKind{}
	managers := map[string]*jobs.Manager{}
	var statusMu sync.Mutex
	status := map[string]string{}
	members := []string{"a", "b", "c"}
	for _, self := range members {
		k := &fakeKind{running: map[string]int{}, starts: map[string]int{}}
		m, err := jobs.New(jobs.Config{
			Self:  self,
			Kinds: []jobs.Kind{k},
			WriteStatus: func(ctx context.Context, path string, data []byte) error {
				st, err := jobs.ParseStatus(data)
				if err != nil {
					return err
				}
				statusMu.Lock()
				status[path] = st.Runner
				statusMu.Unlock()
				return nil
			},
			RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		kinds[self], managers[self] = k, m
	}
	var defs []jobs.Def
	for i := range 20 {
		defs = append(defs, jobs.Def{Kind: "fake", Name: fmt.Sprintf("j%d", i), Version: 1})
	}
	defs = append(defs, jobs.Def{Kind: "unknown", Name: "u", Version: 1})
	for _, m := range managers {
		m.SetDefs(defs)
		m.SetMembers(members)
	}
	// Every fake job runs exactly once, on its owner; the unknown kind nowhere.
	check := func(live []string) {
		t.Helper()
		waitFor(t, "each job on its owner", func() bool {
			total := 0
			for self, k := range kinds {
				running, _ := k.snapshot()
				for p, n := range running {
					if n != 1 || jobs.Owner(p, live) != self {
						return false
					}
					total++
				}
			}
			return total == 20
		})
	}
	check(members)
	waitFor(t, "a status node for each job", func() bool {
		statusMu.Lock()
		defer statusMu.Unlock()
		return len(status) == 20
	})
	statusMu.Lock()
	for p, runner := range status {
		if want := jobs.Owner(strings.Replace(p, "/_replds/status/", "/_replds/jobs/", 1), members); runner != want {
			t.Errorf("status %s says runner %s, want %s", p, runner, want)
		}
	}
	statusMu.Unlock()

	// c leaves: its jobs move, the others stay where they were.
	_, before := kinds["a"].snapshot()
	live := []string{"a", "b"}
	for _, self := range live {
		managers[self].SetMembers(live)
	}
	managers["c"].SetMembers(live) // c no longer sees itself as ready
	check(live)
	_, after := kinds["a"].snapshot()
	for p, n := range before {
		if after[p] != n {
			t.Errorf("job %s, which stayed on a, restarted (%d starts, was %d)", p, after[p], n)
		}
	}

	// A changed spec restarts the job; a deleted one stops it.
	p := defs[0].Path()
	owner := kinds[jobs.Owner(p, live)]
	_, s0 := owner.snapshot()
	defs[0].Version = 2
	defs = defs[1:len(defs):len(defs)]
	changed := append([]jobs.Def{{Kind: "fake", Name: "j0", Version: 2}}, defs...)
	for _, self := range live {
		managers[self].SetDefs(changed)
	}
	waitFor(t, "j0 restarted", func() bool { r, s := owner.snapshot(); return s[p] == s0[p]+1 && r[p] == 1 })
	for _, self := range live {
		managers[self].SetDefs(changed[1:])
	}
	waitFor(t, "j0 stopped", func() bool { r, _ := owner.snapshot(); return r[p] == 0 })
}

func TestManager_RetriesFailedRuns(t *testing.T) {
	k := &fakeKind{running: map[string]int{}, starts: map[string]int{}, fail: errors.New("target unreachable")}
	m, err := jobs.New(jobs.Config{
		Self: "a", Kinds: []jobs.Kind{k},
		WriteStatus: func(context.Context, string, []byte) error { return nil },
		RetryMin:    time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.SetMembers([]string{"a"})
	m.SetDefs([]jobs.Def{{Kind: "fake", Name: "x", Version: 1}})
	waitFor(t, "three attempts", func() bool { _, s := k.snapshot(); return s["/_replds/jobs/fake/x"] >= 3 })
	m.Close()
	if r, _ := k.snapshot(); len(r) != 0 {
		t.Errorf("after Close, running %v", r)
	}
	if got := m.Running(); len(got) != 0 {
		t.Errorf("Running() after Close = %v", got)
	}
}

// TestManager_Requests: a request present when the job starts reaches it
// once, a newer one reaches the running instance, an older or equal
// version is dropped.
func TestManager_Requests(t *testing.T) {
	k := &fakeKind{running: map[string]int{}, starts: map[string]int{}}
	m, err := jobs.New(jobs.Config{
		Self:        "a",
		Kinds:       []jobs.Kind{k},
		WriteStatus: func(context.Context, string, []byte) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := func() []string {
		k.mu.Lock()
		defer k.mu.Unlock()
		return slices.Clone(k.requests)
	}
	m.SetRequest("fake", "j", jobs.Request{Data: []byte("first"), Version: 5})
	m.SetDefs([]jobs.Def{{Kind: "fake", Name: "j", Version: 1}})
	m.SetMembers([]string{"a"})
	waitFor(t, "the pending request", func() bool { return len(got()) == 1 })
	m.SetRequest("fake", "j", jobs.Request{Data: []byte("stale"), Version: 4})
	m.SetRequest("fake", "j", jobs.Request{Data: []byte("second"), Version: 6})
	waitFor(t, "the newer request", func() bool { return len(got()) == 2 })
	if r := got(); r[0] != "first" || r[1] != "second" {
		t.Errorf("requests = %q, want [first second]", r)
	}
}

// slowStopKind's Run, once cancelled, returns only when release closes.
type slowStopKind struct {
	fakeKind
	release chan struct{}
}

func (k *slowStopKind) Run(ctx context.Context, job jobs.Job) error {
	k.mu.Lock()
	k.starts[job.Path()]++
	k.mu.Unlock()
	<-ctx.Done()
	<-k.release
	return nil
}

// TestManager_SlowStopDoesNotBlock: stopping an instance whose cleanup
// takes long holds up neither the Manager nor other calls, and the job's
// next instance runs only once the old one has returned.
func TestManager_SlowStopDoesNotBlock(t *testing.T) {
	k := &slowStopKind{fakeKind: fakeKind{running: map[string]int{}, starts: map[string]int{}}, release: make(chan struct{})}
	m, err := jobs.New(jobs.Config{Self: "a", Kinds: []jobs.Kind{k}, Settle: -1,
		WriteStatus: func(context.Context, string, []byte) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	released := false
	t.Cleanup(func() { // first: a failed test must not leave Close waiting
		if !released {
			close(k.release)
		}
	})
	starts := func() int {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.starts[jobs.DefPath("fake", "j")]
	}
	m.SetMembers([]string{"a"})
	m.SetDefs([]jobs.Def{{Kind: "fake", Name: "j", Version: 1}})
	waitFor(t, "the first instance", func() bool { return starts() == 1 })
	returned := make(chan struct{})
	go func() {
		m.SetDefs([]jobs.Def{{Kind: "fake", Name: "j", Version: 2}})
		m.SetMembers([]string{"a"})
		close(returned)
	}()
	waitFor(t, "SetDefs and SetMembers to return while the old instance cleans up", func() bool {
		select {
		case <-returned:
			return true
		default:
			return false
		}
	})
	if got := starts(); got != 1 {
		t.Fatalf("the new instance ran (%d starts) before the old one returned", got)
	}
	close(k.release)
	released = true
	waitFor(t, "the new instance", func() bool { return starts() == 2 })
}
