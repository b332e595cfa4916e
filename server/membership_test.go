package server

import (
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestGRPCAddrOf(t *testing.T) {
	from := net.ParseIP("10.1.2.3")
	for _, tc := range []struct{ meta, want string }{
		{"127.0.0.1:12100", "127.0.0.1:12100"},
		{"db1.example.net:12100", "db1.example.net:12100"},
		{"0.0.0.0:12100", "10.1.2.3:12100"},
		{"[::]:12100", "10.1.2.3:12100"},
		{":12100", "10.1.2.3:12100"},
		{"garbage", "garbage"},
	} {
		n := &memberlist.Node{Name: "m", Addr: from, Meta: []byte(tc.meta)}
		if got := grpcAddrOf(n); got != tc.want {
			t.Errorf("grpcAddrOf(meta %q from %s) = %q, want %q", tc.meta, from, got, tc.want)
		}
	}
}
