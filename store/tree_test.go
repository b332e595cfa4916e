package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func TestHashTree_OrderIndependent(t *testing.T) {
	type node struct {
		path string
		m    Meta
	}
	var nodes []node
	for i := range 500 {
		nodes = append(nodes, node{fmt.Sprintf("/n/%d", i), Meta{Version: uint64(i), Origin: 3, Deleted: i%7 == 0}})
	}
	a, b := newHashTree(), newHashTree()
	for _, n := range nodes {
		a.toggle(bucketOf(n.path), nodeHash(n.path, n.m))
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, i := range r.Perm(len(nodes)) {
		n := nodes[i]
		// A detour through another version cancels out.
		other := Meta{Version: 99999, Origin: 1}
		b.toggle(bucketOf(n.path), nodeHash(n.path, other))
		b.toggle(bucketOf(n.path), nodeHash(n.path, n.m))
		b.toggle(bucketOf(n.path), nodeHash(n.path, other))
	}
	if !a.equal(b) || a.root() == (Hash{}) {
		t.Fatalf("roots %x and %x differ (or are zero)", a.root(), b.root())
	}
	// Removing everything returns to the empty tree.
	for _, n := range nodes {
		a.toggle(bucketOf(n.path), nodeHash(n.path, n.m))
	}
	if !a.equal(newHashTree()) {
		t.Fatalf("tree not empty after removing every node: root %x", a.root())
	}
}

func TestNodeHash_Fields(t *testing.T) {
	base := Meta{Version: 1, Origin: 2, Seq: 3, Size: 4}
	h := nodeHash("/a", base)
	for name, m := range map[string]Meta{
		"version": {Version: 2, Origin: 2, Seq: 3, Size: 4},
		"origin":  {Version: 1, Origin: 3, Seq: 3, Size: 4},
		"deleted": {Version: 1, Origin: 2, Seq: 3, Deleted: true},
	} {
		if nodeHash("/a", m) == h {
			t.Errorf("nodeHash ignores %s", name)
		}
	}
	if nodeHash("/a", Meta{Version: 1, Origin: 2, Seq: 9, Size: 9}) != h {
		t.Errorf("nodeHash depends on seq or size")
	}
	if nodeHash("/b", base) == h {
		t.Errorf("nodeHash ignores the path")
	}
}

func BenchmarkTree_Update(b *testing.B) {
	t := newHashTree()
	paths := make([]string, 4096)
	for i := range paths {
		paths[i] = fmt.Sprintf("/bench/dir/%d", i)
	}
	b.ResetTimer()
	for i := range b.N {
		// What the committer does per change: out with the old hash, in
		// with the new.
		p := paths[i%len(paths)]
		bucket := bucketOf(p)
		t.toggle(bucket, nodeHash(p, Meta{Version: uint64(i), Origin: 1}))
		t.toggle(bucket, nodeHash(p, Meta{Version: uint64(i + 1), Origin: 1}))
	}
}

func TestEntry_Size(t *testing.T) {
	// The radix tree holds one entry per node: keep it at 32 bytes.
	if got := unsafe.Sizeof(entry{}); got != 32 {
		t.Errorf("entry is %d bytes, want 32", got)
	}
}
