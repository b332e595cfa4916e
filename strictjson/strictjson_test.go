package strictjson_test

import (
	"strings"
	"testing"

	"github.com/replds/replds/strictjson"
)

func TestDecode(t *testing.T) {
	type spec struct {
		Prefix string `json:"prefix"`
		Paused bool   `json:"paused"`
	}
	var s spec
	if err := strictjson.Decode([]byte(`{"prefix": "/a", "paused": true}`), &s); err != nil || s.Prefix != "/a" || !s.Paused {
		t.Fatalf("Decode = %+v, %v", s, err)
	}
	for in, want := range map[string]string{
		`{"prefx": "/a"}`:    `unknown field "prefx" (known: prefix, paused)`,
		`{"paused": "yes"}`:  `field "paused": want a boolean, got string`,
		`[1]`:                `want a JSON object`,
		`{"prefix": "/a"} x`: `trailing data after`,
		`{"prefix": `:        `truncated JSON`,
		``:                   `empty`,
	} {
		var s spec
		if err := strictjson.Decode([]byte(in), &s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}
