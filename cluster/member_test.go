package cluster

import (
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestDecodeMeta(t *testing.T) {
	from := net.ParseIP("10.1.2.3")
	for _, tc := range []struct {
		name string
		meta []byte
		want Meta
	}{
		{"legacy address", []byte("127.0.0.1:12100"), Meta{GRPCAddr: "127.0.0.1:12100"}},
		{"legacy host name", []byte("db1.example.net:12100"), Meta{GRPCAddr: "db1.example.net:12100"}},
		{"legacy unspecified v4", []byte("0.0.0.0:12100"), Meta{GRPCAddr: "10.1.2.3:12100"}},
		{"legacy unspecified v6", []byte("[::]:12100"), Meta{GRPCAddr: "10.1.2.3:12100"}},
		{"legacy no host", []byte(":12100"), Meta{GRPCAddr: "10.1.2.3:12100"}},
		{"legacy garbage", []byte("garbage"), Meta{GRPCAddr: "garbage"}},
		{"ready", Meta{GRPCAddr: "127.0.0.1:1", Ready: true}.encode(), Meta{GRPCAddr: "127.0.0.1:1", Ready: true}},
		{"not ready", Meta{GRPCAddr: "127.0.0.1:1"}.encode(), Meta{GRPCAddr: "127.0.0.1:1"}},
		{"ready, no host", Meta{GRPCAddr: ":7", Ready: true}.encode(), Meta{GRPCAddr: "10.1.2.3:7", Ready: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &memberlist.Node{Name: "m", Addr: from, Meta: tc.meta}
			if got := decodeMeta(n); got != tc.want {
				t.Errorf("decodeMeta(%q from %s) = %+v, want %+v", tc.meta, from, got, tc.want)
			}
		})
	}
}

func TestState_String(t *testing.T) {
	for s, want := range map[State]string{Alive: "alive", Dead: "dead", Left: "left", State(42): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
