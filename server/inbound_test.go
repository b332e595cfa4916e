package server

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"testing"
	"time"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/store"
)

func TestInbound_ClaimsFreshStreamsOnly(t *testing.T) {
	var in inbound
	now := time.Unix(1000, 0)
	a, b := in.open(), in.open()
	in.open() // a third stream, that has delivered nothing yet
	in.delivered(a, 7, 10, now)
	in.delivered(a, 7, 20, now.Add(time.Second)) // a later page: a still started after 10
	in.delivered(b, 7, 4, now)                   // a second stream from 7 (a reconnect)
	in.delivered(b, 9, 30, now)                  // that now carries another origin
	if got, want := in.claims(now.Add(time.Second)), (store.Vector{7: 10, 9: 30}); !maps.Equal(got, want) {
		t.Errorf("claims = %v, want %v", got, want)
	}
	// b has delivered nothing for longer than pushFresh: it may be cut off
	// by a partition that its keepalives have not noticed yet.
	if got, want := in.claims(now.Add(pushFresh+time.Millisecond)), (store.Vector{7: 10}); !maps.Equal(got, want) {
		t.Errorf("claims after pushFresh = %v, want %v", got, want)
	}
	in.close(a)
	if got := in.claims(now.Add(time.Second)); !maps.Equal(got, store.Vector{9: 30}) {
		t.Errorf("claims after closing a = %v, want only origin 9", got)
	}
}

// TestAnswerSync_SkipsWhatAPushStreamCarries: a responder does not relay
// an origin's writes to an asker that a push stream from that origin
// serves, unless the stream started after what the asker holds.
func TestAnswerSync_SkipsWhatAPushStreamCarries(t *testing.T) {
	ctx := context.Background()
	origin, relay, asker := openTestStore(t), openTestStore(t), openTestStore(t)
	for i := range 6 {
		if _, err := origin.Write(ctx, []store.Write{{Path: fmt.Sprintf("/n/%d", i), Data: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	// The relay holds all 6 writes, the asker the first 2.
	copyUpTo := func(dst *store.Store, upto uint64) {
		msg, _, _, err := pushPage(origin, origin.Origin(), 0)
		if err != nil {
			t.Fatal(err)
		}
		msg.Nodes = msg.Nodes[:upto]
		if _, err := applyPush(ctx, dst, msg); err != nil {
			t.Fatal(err)
		}
	}
	copyUpTo(relay, 6)
	copyUpTo(asker, 2)
	o := origin.Origin()
	relayed := func(pushedSince ...*repldspb.VectorEntry) int {
		req := syncRequest(asker)
		req.PushedSince = pushedSince
		n := 0
		if err := answerSync(relay, req, func(m *repldspb.SyncResponse) error {
			n += len(m.Nodes)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	since := func(origin, seq uint64) *repldspb.VectorEntry {
		return &repldspb.VectorEntry{Origin: origin, Seq: seq}
	}
	for _, tc := range []struct {
		name   string
		claims []*repldspb.VectorEntry
		want   int
	}{
		{"no push stream", nil, 4},
		{"a stream since seq 2", []*repldspb.VectorEntry{since(o, 2)}, 0},
		{"a stream since seq 1", []*repldspb.VectorEntry{since(o, 1)}, 0},
		{"a stream since seq 4: a gap before it", []*repldspb.VectorEntry{since(o, 4)}, 4},
		{"two streams, since 4 and since 2", []*repldspb.VectorEntry{since(o, 4), since(o, 2)}, 0},
		{"a stream of another origin", []*repldspb.VectorEntry{since(o+1, 0)}, 4},
	} {
		if got := relayed(tc.claims...); got != tc.want {
			t.Errorf("%s: relayed %d nodes, want %d", tc.name, got, tc.want)
		}
	}
}

// openTestStore opens a store in a directory of its own, closed at the
// end of the test.
func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig(filepath.Join(t.TempDir(), "replds.db"))
	cfg.NoSync = true
	cfg.Logger = slog.New(slog.DiscardHandler)
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestInbound_AppliedRateLimitsItsLine: the first batch is logged at once,
// then at most one line per interval, counting the batches in between.
func TestInbound_AppliedRateLimitsItsLine(t *testing.T) {
	var in inbound
	now := time.Unix(1000, 0)
	for _, step := range []struct {
		after          time.Duration
		n              int
		batches, nodes int
		log            bool
	}{
		{0, 3, 1, 3, true},
		{100 * time.Millisecond, 2, 0, 0, false},
		{100 * time.Millisecond, 4, 0, 0, false},
		{replicatedLogInterval, 1, 3, 7, true},
		{replicatedLogInterval + time.Millisecond, 5, 1, 5, true},
	} {
		now = now.Add(step.after)
		b, n, log := in.applied(now, step.n)
		if b != step.batches || n != step.nodes || log != step.log {
			t.Errorf("applied(+%v, %d) = %d, %d, %v; want %d, %d, %v", step.after, step.n, b, n, log, step.batches, step.nodes, step.log)
		}
	}
}
