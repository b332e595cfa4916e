package servertest

import (
	"testing"

	"github.com/replds/replds/server"
)

// Gathered returns the sum of the samples (counters and gauges) of metric
// name in s's registry whose labels include the pairs kv (name, value,
// ...); 0 if none matches.
func Gathered(t testing.TB, s *server.Server, name string, kv ...string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	sample:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(kv); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
						found = true
						break
					}
				}
				if !found {
					continue sample
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
