package watcher

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	repldspb "github.com/replds/replds/proto"
)

// TestApply_DropsTombstones: at a bookmark, the state forgets the
// tombstones older than the grace that the new resume token covers, and
// keeps the recent ones, those the token does not cover, and live nodes.
func TestApply_DropsTombstones(t *testing.T) {
	h := newHarness(t, "/", func(c *Config) { c.TombstoneGrace = time.Hour })
	now := time.Now()
	old := uint64(now.Add(-2*time.Hour).UnixMilli()) << 16
	recent := uint64(now.UnixMilli()) << 16
	node := func(path string, version, seq uint64, deleted bool) *repldspb.Node {
		n := &repldspb.Node{Path: path, Version: version, Origin: 1, Seq: seq, Deleted: deleted}
		if !deleted {
			n.Data = []byte("x")
		}
		return n
	}
	h.bookmark(4, true,
		node("/gone", old, 1, false), node("/fresh", old, 2, false),
		node("/far", old, 3, false), node("/kept", old, 4, false))
	// A later batch deletes three of them; one delete's seq is beyond the
	// token (it came by repair), one is recent.
	h.a.lastDrop = time.Time{}
	h.bookmark(6, false,
		node("/gone", old+1, 5, true), node("/fresh", recent, 6, true), node("/far", old+1, 9, true))
	h.wantTree(map[string]string{"kept": "x"})
	held := map[string]bool{}
	if err := h.a.st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(k, _ []byte) error {
			held[string(k)] = true
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"/fresh": true, "/far": true, "/kept": true}
	for p := range want {
		if !held[p] {
			t.Errorf("state lost %s", p)
		}
	}
	for p := range held {
		if !want[p] {
			t.Errorf("state still holds %s, an old tombstone the token covers", p)
		}
	}
	// A record from before seqs were kept decodes with seq 0.
	r, err := decodeNodeRec(nodeRec{Version: 7, Origin: 1, Seq: 9, Deleted: true}.encode()[:17])
	if err != nil || r != (nodeRec{Version: 7, Origin: 1, Deleted: true}) {
		t.Errorf("decode 17-byte record = %+v, %v", r, err)
	}
}

// TestApply_ResetWithOlderTombstone: a reset replay that holds a path as a
// tombstone older than the live node the state holds (its delete was
// collected; the server kept an older one) deletes the node.
func TestApply_ResetWithOlderTombstone(t *testing.T) {
	h := newHarness(t, "/")
	h.bookmark(1, true, live("/a", 5, "x"), live("/b", 6, "y"))
	h.wantTree(map[string]string{"a": "x", "b": "y"})
	h.send(&repldspb.WatchResponse{Reset_: true})
	h.bookmark(9, true, tomb("/a", 3), live("/b", 6, "y"))
	h.wantTree(map[string]string{"b": "y"})
}
