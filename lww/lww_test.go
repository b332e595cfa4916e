package lww_test

import (
	"testing"

	"github.com/replds/replds/lww"
)

func TestStamp_Newer(t *testing.T) {
	tests := []struct {
		a, b lww.Stamp
		want bool
	}{
		{lww.Stamp{Version: 2, Origin: 1}, lww.Stamp{Version: 1, Origin: 9}, true},
		{lww.Stamp{Version: 1, Origin: 9}, lww.Stamp{Version: 2, Origin: 1}, false},
		{lww.Stamp{Version: 5, Origin: 2}, lww.Stamp{Version: 5, Origin: 1}, true},
		{lww.Stamp{Version: 5, Origin: 1}, lww.Stamp{Version: 5, Origin: 2}, false},
		{lww.Stamp{Version: 5, Origin: 1}, lww.Stamp{Version: 5, Origin: 1}, false},
		{lww.Stamp{Version: 1}, lww.Stamp{}, true},
	}
	for _, tt := range tests {
		if got := tt.a.Newer(tt.b); got != tt.want {
			t.Errorf("%+v.Newer(%+v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
