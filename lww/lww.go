// Package lww holds replds's one last-write-wins rule: of two writes of a
// path, the one with the higher HLC version wins, and on equal versions the
// one with the higher origin. The servers' store and the pull client's
// state both decide with Stamp.Newer, so a mirror never disagrees with the
// cluster about which write is current.
//
// It is a leaf: it imports only the standard library, so that clients (the follower, the file
// mirror) apply the rule without importing the store.
package lww

import "time"

// Stamp is what last-write-wins compares of a write: its HLC version and
// the origin (writing server) that breaks ties.
type Stamp struct {
	Version uint64
	Origin  uint64
}

// Newer reports whether s wins over o: higher Version, then higher Origin.
// Equal stamps are the same write: neither is newer.
func (s Stamp) Newer(o Stamp) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Origin > o.Origin
}

// Versions are hybrid logical clock values: wall-clock milliseconds in
// the top 48 bits, a logical counter in the low 16.
const counterBits = 16

// VersionAt returns the smallest version of wall clock t (counter zero);
// times before 1970 give 0.
func VersionAt(t time.Time) uint64 {
	return uint64(max(t.UnixMilli(), 0)) << counterBits
}

// WallTime returns the wall-clock time of version v, to the millisecond.
func WallTime(v uint64) time.Time {
	return time.UnixMilli(int64(v >> counterBits))
}
