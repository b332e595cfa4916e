package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

// count returns the records at level or above with message msg, and the
// int attribute "count" of the last of them.
func (r *records) count(level slog.Level, msg string) (n int, lastCount int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level >= level && rec.Message == msg {
			n++
			rec.Attrs(func(a slog.Attr) bool {
				if a.Key == "count" {
					lastCount = a.Value.Int64()
				}
				return true
			})
		}
	}
	return n, lastCount
}

func TestSlogWriter_WarningsRateLimited(t *testing.T) {
	rec := &records{}
	now := time.Unix(1000, 0)
	w := &slogWriter{log: slog.New(rec), gate: &gate{}, now: func() time.Time { return now }}
	for i := range 1000 {
		fmt.Fprintf(w, "[WARN] memberlist: Failed to decrypt packet from 10.0.%d.%d:%d: no installed keys could decrypt the message\n", i/250, i%250, 40000+i)
	}
	fmt.Fprintf(w, "[ERR] memberlist: Failed to receive TCP: EOF\n")
	fmt.Fprintf(w, "[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n")
	if n, _ := rec.count(slog.LevelWarn, "memberlist"); n != warnBurst+1 {
		t.Errorf("%d warnings logged for 1000 of one kind and 1 of another, want %d", n, warnBurst+1)
	}
	if n, _ := rec.count(slog.LevelDebug, "memberlist"); n != warnBurst+2 {
		t.Errorf("%d lines logged in all, want %d (debug lines are not limited)", n, warnBurst+2)
	}
	now = now.Add(warnWindow)
	w.flush()
	n, count := rec.count(slog.LevelWarn, "memberlist warnings suppressed")
	if n != 1 || count != 1000-warnBurst {
		t.Errorf("summaries: %d, count %d; want 1 summing up %d", n, count, 1000-warnBurst)
	}
}

// Garbage sent to the gossip port of a member with a key logs a few
// warnings, not one per packet.
func TestMembership_GarbageDoesNotFloodTheLog(t *testing.T) {
	rec := &records{}
	cfg := DefaultConfig("g", "127.0.0.1", 0)
	cfg.Profile = "local"
	cfg.SecretKey = make([]byte, 32)
	cfg.Logger = slog.New(rec)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	conn, err := net.Dial("udp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const packets = 2000
	for i := range packets {
		conn.Write([]byte(fmt.Sprintf("garbage %d %x", i, i*7919)))
	}
	for range 20 {
		tc, err := net.Dial("tcp", m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		tc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		tc.Close()
	}
	seen := func() int {
		m.logw.mu.Lock()
		defer m.logw.mu.Unlock()
		n := 0
		for _, k := range m.logw.kinds {
			n += k.n
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for seen() < packets/2 {
		if time.Now().After(deadline) {
			t.Fatalf("memberlist reported %d of %d garbage packets in 20 s", seen(), packets)
		}
		time.Sleep(10 * time.Millisecond) // polling under the deadline
	}
	warned, _ := rec.count(slog.LevelWarn, "memberlist")
	m.logw.mu.Lock()
	kinds := len(m.logw.kinds)
	m.logw.mu.Unlock()
	if warned > warnBurst*kinds {
		t.Errorf("%d warnings logged for %d bad packets of %d kinds, want at most %d", warned, seen(), kinds, warnBurst*kinds)
	}
	t.Logf("%d bad packets and connections reported by memberlist, %d warnings logged (%d kinds)", seen(), warned, kinds)
}
