package watcher_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/triggers"
)

// TestWatcher_AtomicPairNeverMixed: a certificate and its key written in
// one Store call are one batch; in atomic mode a reader that opens the
// store directory once never sees one without the other, during 100
// updates, and every trigger run sees a complete pair too.
func TestWatcher_AtomicPairNeverMixed(t *testing.T) {
	t.Parallel()
	// The pull watches the server written to: a server that got the
	// pair by replication may apply it as two batches.
	c := servertest.NewCluster(t, 1)
	c.Store(0, servertest.Put("/tls/cert", "0"), servertest.Put("/tls/key", "0"))
	p := newPull(t, c, "/tls", 0)
	p.cfg.Atomic = true
	pairs := filepath.Join(t.TempDir(), "pairs")
	trigDir := filepath.Join(filepath.Dir(p.cfg.Dir), "triggers")
	// Instead of the default trigger, one that reads the pair, at most
	// every 200ms so that forking a shell does not set the pace.
	cmd := fmt.Sprintf(`printf '%%s %%s\n' "$(cat "$REPLDS_STORE/cert")" "$(cat "$REPLDS_STORE/key")" >> '%s'`, pairs)
	b, _ := json.Marshal(map[string]any{"path": "/tls", "command": cmd, "wait": map[string]string{"min": "50ms", "max": "200ms"}})
	if err := os.WriteFile(filepath.Join(trigDir, "pair"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(trigDir, "log")); err != nil {
		t.Fatal(err)
	}
	if err := p.cfg.Triggers.(*triggers.Runner).Reload(); err != nil {
		t.Fatal(err)
	}
	p.start()
	p.waitFile(c, "cert", "0", false)

	// The reader resolves the symlink once per look, as a service that
	// opens the directory (or readlink-s it) does.
	var (
		wg                    sync.WaitGroup
		stop                  = make(chan struct{})
		reads, vanished, last int
		seen                  = map[int]bool{}
		mixed                 []string
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := os.OpenRoot(p.cfg.Dir)
			if err != nil {
				mixed = append(mixed, "open: "+err.Error())
				return
			}
			cert, err1 := r.ReadFile("cert")
			key, err2 := r.ReadFile("key")
			r.Close()
			switch {
			case errors.Is(err1, fs.ErrNotExist) || errors.Is(err2, fs.ErrNotExist):
				// The snapshot was removed after a newer one replaced it.
				vanished++
				continue
			case err1 != nil || err2 != nil:
				mixed = append(mixed, fmt.Sprintf("read: %v, %v", err1, err2))
				return
			case !bytes.Equal(cert, key):
				mixed = append(mixed, fmt.Sprintf("cert %s with key %s", cert, key))
				continue
			}
			n, _ := strconv.Atoi(string(cert))
			if n < last {
				mixed = append(mixed, fmt.Sprintf("went back from %d to %d", last, n))
			}
			last = n
			seen[n] = true
			reads++
		}
	})

	start := time.Now()
	const updates = 100
	// Each Store is one event on the server, one message on the stream,
	// one batch for the watcher: 100 swaps, however fast they come.
	for i := 1; i <= updates; i++ {
		v := strconv.Itoa(i)
		c.Store(0, servertest.Put("/tls/cert", v), servertest.Put("/tls/key", v))
	}
	p.waitFile(c, "key", strconv.Itoa(updates), false)
	close(stop)
	wg.Wait()
	t.Logf("%d updates in %v; the reader made %d consistent reads of %d versions, %d reads hit a removed snapshot",
		updates, time.Since(start).Round(time.Millisecond), reads, len(seen), vanished)
	if len(mixed) > 0 {
		t.Fatalf("the reader saw %d bad states, first: %s", len(mixed), mixed[0])
	}
	if vanished > 0 {
		t.Errorf("%d reads hit a removed snapshot; want replaced snapshots kept for the grace period", vanished)
	}

	// Every trigger run saw a complete pair, never an older one.
	c.Wait(10*time.Second, "trigger runs", func() error {
		b, err := os.ReadFile(pairs)
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		prev := -1
		for _, l := range lines {
			cert, key, _ := strings.Cut(l, " ")
			n, err := strconv.Atoi(cert)
			if err != nil || cert != key || n < prev {
				t.Fatalf("trigger run saw %q after %d", l, prev)
			}
			prev = n
		}
		if prev != updates {
			return fmt.Errorf("last trigger run saw %d, want %d", prev, updates)
		}
		return nil
	})

	// Beside the symlink: the current snapshot and the retired ones,
	// older.
	entries, err := os.ReadDir(filepath.Dir(p.cfg.Dir))
	if err != nil {
		t.Fatal(err)
	}
	var snaps []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".mirror.replds-") {
			snaps = append(snaps, e.Name())
		}
	}
	target, err := os.Readlink(p.cfg.Dir)
	if err != nil || len(snaps) < 2 || !slices.Contains(snaps, target) {
		t.Fatalf("beside the store directory (-> %s, %v): %v, want the current snapshot and retired ones", target, err, snaps)
	}
	cur, _ := strconv.Atoi(strings.TrimPrefix(target, ".mirror.replds-snap-"))
	for _, name := range snaps {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, ".mirror.replds-snap-")); err != nil || n > cur {
			t.Errorf("beside the store directory: %s, not a snapshot retired before %s", name, target)
		}
	}
}
