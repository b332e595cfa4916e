package store

import (
	"encoding/binary"
	"fmt"
)

// Bucket and key names of the bbolt file; see doc.go for the layout.
var (
	bucketNodes  = []byte("nodes")
	bucketLog    = []byte("log")
	bucketState  = []byte("state")
	bucketVector = []byte("vector")

	keyFormat = []byte("format")
	keyOrigin = []byte("origin")
	keyHLC    = []byte("hlc")
	keyFloor  = []byte("floor")
)

// formatVersion is the layout version stored under state/format. Open
// refuses files of any other version.
const formatVersion = 1

// headerLen is the size of the fixed header in front of a node's data:
// version(8) origin(8) seq(8) size(4) flags(1), all big endian.
const headerLen = 8 + 8 + 8 + 4 + 1

// flagDeleted marks a tombstone in the header's flags byte.
const flagDeleted = 1 << 0

// encodeNode returns the value stored under a node's path: header + data.
func encodeNode(m Meta, data []byte) []byte {
	v := make([]byte, headerLen+len(data))
	putHeader(v, m)
	copy(v[headerLen:], data)
	return v
}

// putHeader writes the header of m into the first headerLen bytes of v.
func putHeader(v []byte, m Meta) {
	binary.BigEndian.PutUint64(v[0:8], m.Version)
	binary.BigEndian.PutUint64(v[8:16], m.Origin)
	binary.BigEndian.PutUint64(v[16:24], m.Seq)
	binary.BigEndian.PutUint32(v[24:28], m.Size)
	v[28] = 0
	if m.Deleted {
		v[28] = flagDeleted
	}
}

// valueArena holds the copies a Write or Apply call makes of its data,
// laid out as the values bbolt stores (a header, then the data): flush
// writes the header in place rather than copying every node's data once
// more. One allocation serves a whole call.
type valueArena struct{ buf []byte }

// newValueArena returns an arena for up to n values holding total bytes of
// data.
func newValueArena(n, total int) *valueArena {
	return &valueArena{buf: make([]byte, 0, n*headerLen+total)}
}

// add copies data behind room for a header and returns the value, whose
// capacity ends with it.
func (a *valueArena) add(data []byte) []byte {
	start := len(a.buf)
	a.buf = append(a.buf[:start+headerLen], data...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// decodeNode splits a stored value into its metadata and data. The data
// aliases v: copy it before the transaction ends.
func decodeNode(v []byte) (Meta, []byte, error) {
	if len(v) < headerLen {
		return Meta{}, nil, fmt.Errorf("short node value: %d bytes", len(v))
	}
	m := Meta{
		Version: binary.BigEndian.Uint64(v[0:8]),
		Origin:  binary.BigEndian.Uint64(v[8:16]),
		Seq:     binary.BigEndian.Uint64(v[16:24]),
		Size:    binary.BigEndian.Uint32(v[24:28]),
		Deleted: v[28]&flagDeleted != 0,
	}
	data := v[headerLen:]
	if int(m.Size) != len(data) || (m.Deleted && m.Size != 0) {
		return Meta{}, nil, fmt.Errorf("node size %d does not match %d data bytes", m.Size, len(data))
	}
	return m, data, nil
}

// logKey returns the key of (origin, seq) in the log bucket.
func logKey(origin, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k[0:8], origin)
	binary.BigEndian.PutUint64(k[8:16], seq)
	return k
}

// decodeLogKey is the inverse of logKey.
func decodeLogKey(k []byte) (origin, seq uint64, err error) {
	if len(k) != 16 {
		return 0, 0, fmt.Errorf("log key of %d bytes", len(k))
	}
	return binary.BigEndian.Uint64(k[0:8]), binary.BigEndian.Uint64(k[8:16]), nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("integer of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
