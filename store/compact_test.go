package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/boltcompact"
	"github.com/replds/replds/store"
)

// canary is secret data the tests look for in the store file's bytes.
var canary = []byte("CANARY-7f3a9c1e-do-not-keep-me")

// fileHas reports whether the file at path contains b.
func fileHas(t *testing.T, path string, b []byte) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return bytes.Contains(raw, b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func mustWrite(t *testing.T, s *store.Store, ws ...store.Write) {
	t.Helper()
	if _, err := s.Write(context.Background(), ws); err != nil {
		t.Fatalf("Write(%v) = %v", ws[0].Path, err)
	}
}

// storeCanary opens a store with eraseInterval, writes the canary at
// /secret/key among other nodes, and then removes it with rm.
func storeCanary(t *testing.T, eraseInterval time.Duration, rm store.Write) (*store.Store, string) {
	t.Helper()
	cfg := store.DefaultConfig(t.TempDir() + "/s.db")
	cfg.EraseInterval = eraseInterval
	s := openStore(t, cfg)
	var others []store.Write
	for i := range 50 {
		others = append(others, store.Write{Path: fmt.Sprintf("/other/%02d", i), Data: bytes.Repeat([]byte{'x'}, 100)})
	}
	mustWrite(t, s, others...)
	mustWrite(t, s, store.Write{Path: "/secret/key", Data: canary})
	if !fileHas(t, cfg.Path, canary) {
		t.Fatalf("canary not in the file after it was written")
	}
	mustWrite(t, s, rm)
	return s, cfg.Path
}

var canaryRemovals = []struct {
	name string
	rm   store.Write
}{
	{"delete", store.Write{Path: "/secret/key", Delete: true}},
	{"overwrite", store.Write{Path: "/secret/key", Data: []byte("new value")}},
	{"recursive delete", store.Write{Path: "/secret", Delete: true, Recursive: true}},
}

// TestStore_EraseInterval: within the erase interval of a delete or an
// overwrite, the old data is gone from the file's bytes.
func TestStore_EraseInterval(t *testing.T) {
	for _, tc := range canaryRemovals {
		t.Run(tc.name, func(t *testing.T) {
			s, path := storeCanary(t, 20*time.Millisecond, tc.rm)
			waitFor(t, "the canary to leave the file", func() bool { return !fileHas(t, path, canary) })
			if s.CompactCount() == 0 {
				t.Errorf("CompactCount() = 0 after the canary left the file")
			}
			checkOthers(t, s)
			if err := s.CheckConsistency(); err != nil {
				t.Errorf("CheckConsistency() = %v", err)
			}
		})
	}
}

// TestStore_EraseIntervalOff shows what the erase interval is for: without
// compaction, deleted data stays readable in the file.
func TestStore_EraseIntervalOff(t *testing.T) {
	s, path := storeCanary(t, 0, canaryRemovals[0].rm)
	if !fileHas(t, path, canary) {
		t.Skip("bbolt reused the canary's page: nothing to show")
	}
	if _, err := s.Compact(context.Background()); err != nil {
		t.Fatalf("Compact() = %v", err)
	}
	if fileHas(t, path, canary) {
		t.Errorf("canary still in the file after Compact")
	}
	checkOthers(t, s)
}

// checkOthers checks the nodes storeCanary wrote besides the canary.
func checkOthers(t *testing.T, s *store.Store) {
	t.Helper()
	for i := range 50 {
		p := fmt.Sprintf("/other/%02d", i)
		n, err := s.Get(p)
		if err != nil || len(n.Data) != 100 {
			t.Fatalf("Get(%s) = %d bytes, %v; want 100 bytes", p, len(n.Data), err)
		}
	}
}

// TestStore_CompactFailure: a failure between two steps of the swap leaves
// a working store with all its data, now and after reopening.
func TestStore_CompactFailure(t *testing.T) {
	injected := errors.New("injected")
	for _, tc := range []struct {
		step    boltcompact.Step
		swapped bool // the new file replaced the old one
	}{
		{boltcompact.StepCopied, false},
		{boltcompact.StepSynced, false},
		{boltcompact.StepRenamed, true},
	} {
		t.Run(tc.step.String(), func(t *testing.T) {
			s, path := storeCanary(t, 0, canaryRemovals[0].rm)
			s.SetCompactHook(func(st boltcompact.Step) error {
				if st == tc.step {
					return injected
				}
				return nil
			})
			_, err := s.Compact(context.Background())
			if !errors.Is(err, injected) {
				t.Fatalf("Compact() = %v, want %v", err, injected)
			}
			if _, err := os.Stat(boltcompact.TempPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("copy left beside the file: stat = %v", err)
			}
			if got := s.CompactCount() == 1; got != tc.swapped {
				t.Errorf("swapped = %v, want %v", got, tc.swapped)
			}
			// The store goes on writing, to the file at path.
			mustWrite(t, s, store.Write{Path: "/after", Data: []byte("after")})
			checkOthers(t, s)
			if err := s.CheckConsistency(); err != nil {
				t.Errorf("CheckConsistency() = %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			s2 := openStore(t, store.DefaultConfig(path))
			checkOthers(t, s2)
			if n, err := s2.Get("/after"); err != nil || string(n.Data) != "after" {
				t.Errorf("after reopening, Get(/after) = %q, %v", n.Data, err)
			}
			// The next compaction, without failure, erases.
			if _, err := s2.Compact(context.Background()); err != nil {
				t.Fatalf("Compact() = %v", err)
			}
			if fileHas(t, path, canary) {
				t.Errorf("canary still in the file after a successful Compact")
			}
		})
	}
}

// TestStore_CompactLeftover: a copy a crash left beside the file is
// removed at Open, and the store holds its data.
func TestStore_CompactLeftover(t *testing.T) {
	path := t.TempDir() + "/s.db"
	s := openStore(t, store.DefaultConfig(path))
	mustWrite(t, s, store.Write{Path: "/a", Data: []byte("a")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(boltcompact.TempPath(path), []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, store.DefaultConfig(path))
	if _, err := os.Stat(boltcompact.TempPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover copy not removed: stat = %v", err)
	}
	if n, err := s.Get("/a"); err != nil || string(n.Data) != "a" {
		t.Errorf("Get(/a) = %q, %v", n.Data, err)
	}
}

// TestStore_CompactConcurrent: writes and reads during compactions are not
// lost: every acknowledged write is in the store, and after reopening.
func TestStore_CompactConcurrent(t *testing.T) {
	path := t.TempDir() + "/s.db"
	s := openStore(t, store.DefaultConfig(path))
	const writers, rounds, minCompactions = 4, 150, 3
	acked := make([]map[string]string, writers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := range writers {
		acked[w] = make(map[string]string)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				p := fmt.Sprintf("/w%d/%d", w, i%20)
				data := fmt.Sprintf("%d-%d", w, i)
				if i%7 == 3 {
					if _, err := s.Write(ctx, []store.Write{{Path: p, Delete: true}}); err != nil {
						t.Errorf("delete %s: %v", p, err)
						return
					}
					acked[w][p] = ""
					continue
				}
				if _, err := s.Write(ctx, []store.Write{{Path: p, Data: []byte(data)}}); err != nil {
					t.Errorf("write %s: %v", p, err)
					return
				}
				acked[w][p] = data
				// Reads race with the swap of the file.
				if n, err := s.Get(p); err != nil || string(n.Data) != data {
					t.Errorf("Get(%s) = %q, %v; want %q", p, n.Data, err, data)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// A reader that never writes, so nothing but the store orders its
	// reads with the swaps.
	var rg sync.WaitGroup
	rg.Add(1)
	go func() {
		defer rg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := s.Get("/w0/1"); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(/w0/1) = %v", err)
				return
			}
		}
	}()
	// Compact until the writers are done, at least minCompactions times.
	n := uint64(0)
	for running := true; running || n < minCompactions; n++ {
		if _, err := s.Compact(ctx); err != nil {
			t.Fatalf("Compact() = %v", err)
		}
		select {
		case <-done:
			running = false
		default:
		}
	}
	<-done
	rg.Wait()
	if s.CompactCount() != n {
		t.Errorf("CompactCount() = %d, want %d", s.CompactCount(), n)
	}
	check := func(s *store.Store) {
		t.Helper()
		for w := range writers {
			for p, want := range acked[w] {
				n, err := s.Get(p)
				if want == "" {
					if !errors.Is(err, store.ErrNotFound) {
						t.Errorf("Get(%s) = %q, %v; want not found", p, n.Data, err)
					}
					continue
				}
				if err != nil || string(n.Data) != want {
					t.Errorf("Get(%s) = %q, %v; want %q", p, n.Data, err, want)
				}
			}
		}
		if err := s.CheckConsistency(); err != nil {
			t.Errorf("CheckConsistency() = %v", err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, store.DefaultConfig(path)))
}

// TestStore_CompactCatchUp: commits made while the snapshot is copied are
// brought into the copy before the swap, the data they replaced leaves
// the file at the next compaction, and writes never wait for the copy.
func TestStore_CompactCatchUp(t *testing.T) {
	cfg := store.DefaultConfig(t.TempDir() + "/s.db")
	cfg.EraseInterval = 20 * time.Millisecond
	s := openStore(t, cfg)
	mustWrite(t, s, store.Write{Path: "/a", Data: canary}, store.Write{Path: "/b", Data: []byte("b")})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.SetCompactHook(func(st boltcompact.Step) error {
		if st == boltcompact.StepCopied {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
		return nil
	})
	type answer struct {
		st  store.CompactStats
		err error
	}
	done := make(chan answer, 1)
	go func() {
		st, err := s.Compact(context.Background())
		done <- answer{st, err}
	}()
	<-entered
	// The copy is held: these commit at once, after its snapshot.
	mustWrite(t, s, store.Write{Path: "/a", Data: []byte("new a")})
	mustWrite(t, s, store.Write{Path: "/b", Delete: true}, store.Write{Path: "/c", Data: []byte("c")})
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatalf("Compact() = %v", r.err)
	}
	if r.st.CaughtUp != 3 || r.st.FullCopy {
		t.Errorf("Compact() = %+v, want 3 paths caught up, no full copy", r.st)
	}
	for path, want := range map[string]string{"/a": "new a", "/c": "c"} {
		if n, err := s.Get(path); err != nil || string(n.Data) != want {
			t.Errorf("Get(%s) = %q, %v; want %q", path, n.Data, err, want)
		}
	}
	if _, err := s.Get("/b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(/b) = %v, want not found", err)
	}
	if err := s.CheckConsistency(); err != nil {
		t.Errorf("CheckConsistency() = %v", err)
	}
	// The canary, overwritten during the copy, went into the new file
	// and out at the compaction the catch-up scheduled.
	waitFor(t, "the canary to leave the file", func() bool { return !fileHas(t, cfg.Path, canary) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, store.DefaultConfig(cfg.Path))
	if n, err := s.Get("/c"); err != nil || string(n.Data) != "c" {
		t.Errorf("after reopening, Get(/c) = %q, %v", n.Data, err)
	}
}
