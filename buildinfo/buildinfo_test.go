package buildinfo_test

import (
	"testing"

	"github.com/replds/replds/buildinfo"
)

func TestInfo_String(t *testing.T) {
	for _, tt := range []struct {
		in   buildinfo.Info
		want string
	}{
		{buildinfo.Info{Version: "(devel)", GoVersion: "go1.26.8"}, "(devel), go1.26.8"},
		{buildinfo.Info{Version: "v1.2.0", Revision: "78ab311e6c2f0123", GoVersion: "go1.26.8"}, "v1.2.0, revision 78ab311e6c2f, go1.26.8"},
		{buildinfo.Info{Version: "v1.2.0", Revision: "78ab", Modified: true, GoVersion: "go1.26.8"}, "v1.2.0, revision 78ab+modified, go1.26.8"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
	if bi := buildinfo.Read(); bi.GoVersion == "" || bi.Version == "" {
		t.Errorf("Read() = %+v, want a version and a Go version", bi)
	}
}
