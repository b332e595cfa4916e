package repldspb

// MergeInto raises v[origin] to every entry's seq that is higher, so that v
// covers x; a nil x merges nothing. It is the one conversion of a wire
// vector into a map, used by the servers and the pull client alike; x is
// not modified.
func (x *Vector) MergeInto(v map[uint64]uint64) {
	for _, e := range x.GetEntries() {
		if e.Seq > v[e.Origin] {
			v[e.Origin] = e.Seq
		}
	}
}
