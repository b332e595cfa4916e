package nodepath_test

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/nodepath/nodepathtest"
)

func TestValidate(t *testing.T) {
	valid := []string{
		"/a",
		"/a/b/c",
		"/.hidden/..x/x..",
		"/_replds/jobs/backup",
		"/日本語/ü",
		"/a b/c-d_e.f",
		"/" + strings.Repeat("s", nodepath.MaxSegmentLen),
		strings.Repeat("/abcdefg", nodepath.MaxDepth),
		strings.Repeat("/"+strings.Repeat("x", nodepath.MaxSegmentLen), nodepath.MaxLen/256),
	}
	for _, p := range valid {
		if err := nodepath.Validate(p); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", p, err)
		}
	}
	for _, tt := range nodepathtest.InvalidPaths {
		t.Run(tt.Name, func(t *testing.T) {
			err := nodepath.Validate(tt.Path)
			if !errors.Is(err, nodepath.ErrInvalid) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalid", tt.Path, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.Problem) || !strings.HasPrefix(msg, "invalid path ") {
				t.Errorf("Validate(%q) = %q, want it to name %q", tt.Path, msg, tt.Problem)
			}
		})
	}
	// The examples of the documentation, verbatim.
	for p, want := range map[string]string{
		"a/b":     `invalid path "a/b": not absolute`,
		"/a/../b": `invalid path "/a/../b": ".." segment`,
		"/a\x00":  `invalid path "/a\x00": control character at byte 2`,
	} {
		if err := nodepath.Validate(p); err == nil || err.Error() != want {
			t.Errorf("Validate(%q) = %v, want %s", p, err, want)
		}
	}
	long := "/" + strings.Repeat("x", 10000)
	if err := nodepath.Validate(long); err == nil || len(err.Error()) > 400 {
		t.Errorf("Validate(10000 bytes) = %d-byte error, want a short one", len(fmt.Sprint(err)))
	}
}

func TestValidatePrefix(t *testing.T) {
	for p, ok := range map[string]bool{"/": true, "/a": true, "/a/b": true, "": false, "//": false, "/a/": false, "a": false} {
		if err := nodepath.ValidatePrefix(p); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok %v", p, err, ok)
		}
	}
}

func TestIsReserved(t *testing.T) {
	for p, want := range map[string]bool{
		"/_replds": true, "/_replds/jobs/backup/x": true, "/_repldsx": false, "/data": false, "/": false,
	} {
		if got := nodepath.IsReserved(p); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestUnder(t *testing.T) {
	tests := []struct {
		path, prefix string
		want         bool
	}{
		{"/a/b/c", "/a/b", true},
		{"/a/b", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a/b-c", "/a/b", false},
		{"/a", "/a/b", false},
		{"/a/b", "/", true},
		{"/", "/", true},
		{"/x", "/a", false},
	}
	for _, tt := range tests {
		if got := nodepath.Under(tt.path, tt.prefix); got != tt.want {
			t.Errorf("Under(%q, %q) = %v, want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}

// FuzzValidate checks that Validate never panics, that it refuses
// with ErrInvalid, and that what it accepts follows every rule, checked
// here independently.
func FuzzValidate(f *testing.F) {
	for _, p := range []string{"/a", "/a/b", "", "/", "a", "/a/", "/a//b", "/a/./b", "/a/../b", "/\x00", "/\\", "/\xff", "/é"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := nodepath.Validate(p)
		if err != nil {
			if !errors.Is(err, nodepath.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid path ") {
				t.Fatalf("Validate(%q) = %v, want ErrInvalid", p, err)
			}
			return
		}
		if !strings.HasPrefix(p, "/") || p == "/" || len(p) > nodepath.MaxLen || !utf8.ValidString(p) {
			t.Fatalf("Validate accepted %q", p)
		}
		segs := strings.Split(p[1:], "/")
		if len(segs) > nodepath.MaxDepth {
			t.Fatalf("Validate accepted %q with %d segments", p, len(segs))
		}
		for _, r := range p {
			if unicode.IsControl(r) {
				t.Fatalf("Validate accepted %q with control character %U", p, r)
			}
		}
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." || len(seg) > nodepath.MaxSegmentLen {
				t.Fatalf("Validate accepted %q with segment %q", p, seg)
			}
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("Validate accepted %q with byte %#x", p, c)
			}
		}
		if path.Clean(p) != p {
			t.Fatalf("Validate accepted %q, which cleans to %q", p, path.Clean(p))
		}
		if nodepath.ValidatePrefix(p) != nil || !nodepath.Under(p, p) || !nodepath.Under(p, "/") {
			t.Fatalf("accepted path %q is not a prefix under itself and /", p)
		}
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			if parent := p[:i]; nodepath.Validate(parent) != nil || !nodepath.Under(p, parent) || nodepath.Under(parent, p) {
				t.Fatalf("parent %q of accepted path %q", parent, p)
			}
		}
	})
}
