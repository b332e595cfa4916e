package replicate

import (
	"testing"
	"time"

	"github.com/replds/replds/store"
)

// TestLagTracker: with writes arriving all the time and each applied by the
// next probe, the bound stays one probe interval; with the token stalled
// it grows with time; the cluster's own origins never count; caught up is 0.
func TestLagTracker(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	own := map[uint64]bool{9: true}
	var l lagTracker
	l.caughtUp = t0
	// Steady: at probe i the source holds i writes, the token i-1.
	for i := 1; i <= 50; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		changes, secs := l.observe(now, store.Vector{1: uint64(i), 9: 1000}, store.Vector{1: uint64(i - 1)}, own)
		if changes != 1 || i > 1 && secs != 1 {
			t.Fatalf("steady probe %d: %d changes, %.0f s; want 1 change, 1 s", i, changes, secs)
		}
	}
	// Stalled at 50: the bound grows from the last covered probe (50).
	for i := 51; i <= 60; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		changes, secs := l.observe(now, store.Vector{1: uint64(i)}, store.Vector{1: 50}, own)
		if want := float64(i - 50); changes != uint64(i-50) || secs != want {
			t.Fatalf("stalled probe %d: %d changes, %.0f s; want %d, %.0f s", i, changes, secs, i-50, want)
		}
	}
	if changes, secs := l.observe(t0.Add(61*time.Second), store.Vector{1: 60}, store.Vector{1: 60}, own); changes != 0 || secs != 0 {
		t.Errorf("caught up: %d changes, %.0f s; want 0, 0", changes, secs)
	}
}
