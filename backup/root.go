package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"

	"github.com/replds/replds/nodepath"
)

// rootDomain starts every content root's input, so that a root is never
// mistaken for the hash of something else.
const rootDomain = "replds backup root v1\n"

// Root computes a content root: the SHA-256 of a canonical encoding of a
// sequence of live nodes (path, version, origin, seq) in strictly
// increasing path order. Data is not part of it: versions identify
// content under last-write-wins. The server computes the root of its
// store state at a backup's vector; Verify recomputes it over the state a
// chain rebuilds to. The encoding of each node is its path's length as a
// big-endian uint32, the path, then version, origin and seq as big-endian
// uint64s, after the domain string "replds backup root v1\n".
//
// The zero Root is not usable: call NewRoot. A Root is used by one
// goroutine.
type Root struct {
	h     hash.Hash
	last  string
	n     uint64
	buf   []byte
	first bool
}

// NewRoot returns an empty content root.
func NewRoot() *Root {
	r := &Root{h: sha256.New(), first: true}
	r.h.Write([]byte(rootDomain))
	return r
}

// Add adds a live node. Paths must be strictly increasing; Add refuses
// (ErrInvalid, changing nothing) a path not after the previous one.
func (r *Root) Add(path string, version, origin, seq uint64) error {
	if !r.first && path <= r.last {
		return fmt.Errorf("%w: root: path %s not after %s", ErrInvalid, nodepath.Quote(path), nodepath.Quote(r.last))
	}
	r.first = false
	r.last = path
	r.n++
	b := r.buf[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(len(path)))
	b = append(b, path...)
	b = binary.BigEndian.AppendUint64(b, version)
	b = binary.BigEndian.AppendUint64(b, origin)
	b = binary.BigEndian.AppendUint64(b, seq)
	r.h.Write(b)
	r.buf = b
	return nil
}

// Len returns the number of nodes added.
func (r *Root) Len() uint64 { return r.n }

// Sum returns the root as hex. It does not change r: more nodes may be
// added after it.
func (r *Root) Sum() string { return hex.EncodeToString(r.h.Sum(nil)) }
