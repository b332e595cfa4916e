package server_test

import (
	"context"
	"runtime"
	"strings"
	"testing"

	repldspb "replds/proto"
	"replds/server"
	"replds/server/servertest"
)

// refusals returns replds_refused_total{reason} of s.
func refusals(t *testing.T, s *server.Server, reason string) float64 {
	t.Helper()
	return gathered(t, s, "replds_refused_total", "reason", reason)
}

// gathered returns the value of the sample of metric name whose labels
// include kv (pairs), 0 if there is none.
func gathered(t *testing.T, s *server.Server, name string, kv ...string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(kv); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// longToken returns a resume token of n origins.
func longToken(n int) *repldspb.Vector {
	v := &repldspb.Vector{}
	for i := range n {
		v.Entries = append(v.Entries, &repldspb.VectorEntry{Origin: uint64(i + 1), Seq: 1 << 40})
	}
	return v
}

func TestGuard_SmallRequestsBoundedBeforeDecoding(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	cl := c.Client(0)
	max := c.Config(0).MaxRequestSize
	big := "/" + strings.Repeat("a", max)

	_, err := cl.Get(timeout(t), &repldspb.GetRequest{Path: big})
	if err == nil || !strings.Contains(err.Error(), "request too large: a GetRequest of") {
		t.Errorf("Get of a %d-byte path: err = %v, want request too large", len(big), err)
	}
	// A token of 10k origins (about 200 KB) is refused before it is
	// decoded into anything.
	st, err := cl.Watch(timeout(t), &repldspb.WatchRequest{Prefix: "/", Token: longToken(10000)})
	if err == nil {
		_, err = st.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "request too large: a WatchRequest of") {
		t.Errorf("Watch with a 10k-origin token: err = %v, want request too large", err)
	}
	if got := refusals(t, c.Server(0), "request_too_large"); got != 2 {
		t.Errorf("replds_refused_total{reason=request_too_large} = %v, want 2", got)
	}
	// A Store of the same size is within its own bound.
	put(t, cl, "/ok", strings.Repeat("v", max))
}

// A token longer than MaxTokenOrigins, but within the request size, gets
// a full replay (a reset) and is not kept: 100 such streams hold no more
// than 100 streams without a token.
func TestWatch_LongTokenReplaysInFullAndIsNotKept(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	cl := c.Client(0)
	put(t, cl, "/w/a", "1")
	origins := c.Config(0).MaxTokenOrigins + 1000

	next := watch(t, cl, "/w", longToken(origins))
	if msg := next(); !msg.Reset_ {
		t.Fatalf("first message of a Watch with a %d-origin token: %v, want a reset", origins, msg)
	}
	if got := untilSynced(next); len(got) != 1 || got[0] != "/w/a" {
		t.Fatalf("replay = %v, want [/w/a]", got)
	}

	const streams = 100
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range streams {
		st, err := cl.Watch(ctx, &repldspb.WatchRequest{Prefix: "/w", Token: longToken(origins)})
		if err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if msg.Synced {
				break
			}
		}
	}
	grown := int64(heap()) - int64(before)
	// A kept token of 5k origins is a map of at least 5k × 16 bytes, 8 MB
	// for 100 streams; an idle stream costs about 15 KiB.
	if limit := int64(streams * 40 << 10); grown > limit {
		t.Errorf("heap grew %d bytes for %d streams with %d-origin tokens, want at most %d", grown, streams, origins, limit)
	}
	if got := refusals(t, c.Server(0), "token_origins"); got != streams+1 {
		t.Errorf("replds_refused_total{reason=token_origins} = %v, want %d", got, streams+1)
	}
	t.Logf("heap grew %d bytes for %d Watch streams with %d-origin tokens", grown, streams, origins)
}
