package lww_test

import (
	"testing"
	"time"

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

func TestVersionAt(t *testing.T) {
	at := time.Date(2026, 12, 2, 20, 0, 0, 123456789, time.UTC)
	v := lww.VersionAt(at)
	if got := lww.WallTime(v).UTC(); !got.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("WallTime(VersionAt(%v)) = %v", at, got)
	}
	if v&0xffff != 0 || lww.VersionAt(at.Add(time.Millisecond)) != v+1<<16 {
		t.Errorf("VersionAt(%v) = %#x: want milliseconds above a zero 16-bit counter", at, v)
	}
	if got := lww.VersionAt(time.Unix(-5, 0)); got != 0 {
		t.Errorf("VersionAt(before 1970) = %d, want 0", got)
	}
}
