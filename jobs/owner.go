package jobs

import (
	"crypto/sha256"
	"encoding/binary"
)

// Owner returns the member that runs the job at path (its definition node,
// /_replds/jobs/KIND/NAME) among members, or "" when members is empty. It
// is rendezvous (highest random weight) hashing: the member whose
// hash(path, member) is highest wins, so every server that sees the same
// members picks the same runner, and removing a member moves only the jobs
// it ran. Ties, which need a hash collision, go to the larger name.
func Owner(path string, members []string) string {
	var best string
	var bestW uint64
	for i, m := range members {
		w := weight(path, m)
		if i == 0 || w > bestW || (w == bestW && m > best) {
			best, bestW = m, w
		}
	}
	return best
}

// weight is the rendezvous weight of member for the job at path. It must
// stay the same across versions: servers of two versions in one cluster
// have to agree on every job's runner.
func weight(path, member string) uint64 {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(member))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
