package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// hashTree is the fixed-shape hash tree over all nodes, tombstones included.
// Level TreeDepth holds TreeLeaves buckets, each the XOR of the hashes of
// the nodes whose path falls into it (bucketOf); every internal node is the
// XOR of its TreeFanout children, so level 0 (the root) is the XOR of every
// node hash. XOR makes the tree independent of the order of updates: two
// stores holding the same (path, version, origin, deleted) tuples have equal
// trees whatever their history. The zero value is not usable: see
// newHashTree. Not safe for concurrent use.
type hashTree struct {
	// levels[l] holds TreeFanout^l hashes; levels[0][0] is the root.
	levels [TreeDepth + 1][]Hash
}

func newHashTree() *hashTree {
	t := new(hashTree)
	n := 1
	for l := range t.levels {
		t.levels[l] = make([]Hash, n)
		n *= TreeFanout
	}
	return t
}

// fanoutBits is log2(TreeFanout).
const fanoutBits = 4

// bucketOf returns the leaf bucket of path: the first two bytes of
// sha256(path), big endian.
func bucketOf(path string) int {
	sum := sha256.Sum256([]byte(path))
	return int(binary.BigEndian.Uint16(sum[:2]))
}

// nodeHash returns the first 16 bytes of
// sha256(path || 0x00 || version BE || origin BE || deleted).
func nodeHash(path string, m Meta) Hash {
	h := sha256.New()
	var buf [1 + 8 + 8 + 1]byte
	binary.BigEndian.PutUint64(buf[1:9], m.Version)
	binary.BigEndian.PutUint64(buf[9:17], m.Origin)
	if m.Deleted {
		buf[17] = 1
	}
	h.Write([]byte(path))
	h.Write(buf[:])
	var sum [sha256.Size]byte
	var out Hash
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// toggle XORs x into leaf bucket b and every node above it. Toggling the
// same hash twice cancels out, which is how a node's old hash is removed.
func (t *hashTree) toggle(b int, x Hash) {
	for l := TreeDepth; l >= 0; l-- {
		h := &t.levels[l][b>>(fanoutBits*(TreeDepth-l))]
		for i := range h {
			h[i] ^= x[i]
		}
	}
}

// root returns the XOR of every node hash.
func (t *hashTree) root() Hash { return t.levels[0][0] }

// children returns a copy of the TreeFanout children of internal node index
// at level, or nil if there is no such node.
func (t *hashTree) children(level, index int) []Hash {
	if level < 0 || level >= TreeDepth || index < 0 || index >= len(t.levels[level]) {
		return nil
	}
	kids := t.levels[level+1][index*TreeFanout : (index+1)*TreeFanout]
	out := make([]Hash, TreeFanout)
	copy(out, kids)
	return out
}

// equal reports whether t and o hold the same hashes.
func (t *hashTree) equal(o *hashTree) bool {
	for l := range t.levels {
		for i := range t.levels[l] {
			if t.levels[l][i] != o.levels[l][i] {
				return false
			}
		}
	}
	return true
}
