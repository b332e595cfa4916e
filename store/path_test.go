package store_test

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"replds/store"
	"replds/store/storetest"
)

func TestValidatePath(t *testing.T) {
	valid := []string{
		"/a",
		"/a/b/c",
		"/.hidden/..x/x..",
		"/_replds/jobs/backup",
		"/日本語/ü",
		"/a b/c-d_e.f",
		"/" + strings.Repeat("s", store.MaxSegmentLen),
		strings.Repeat("/abcdefg", store.MaxPathLen/8),
	}
	for _, p := range valid {
		if err := store.ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	for _, tt := range storetest.InvalidPaths {
		t.Run(tt.Name, func(t *testing.T) {
			err := store.ValidatePath(tt.Path)
			if !errors.Is(err, store.ErrInvalidPath) {
				t.Fatalf("ValidatePath(%q) = %v, want ErrInvalidPath", tt.Path, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.Problem) || !strings.HasPrefix(msg, "store: invalid path ") {
				t.Errorf("ValidatePath(%q) = %q, want it to name %q", tt.Path, msg, tt.Problem)
			}
		})
	}
	// The examples of the documentation, verbatim.
	for p, want := range map[string]string{
		"a/b":     `store: invalid path "a/b": not absolute`,
		"/a/../b": `store: invalid path "/a/../b": ".." segment`,
		"/a\x00":  `store: invalid path "/a\x00": control character at byte 2`,
	} {
		if err := store.ValidatePath(p); err == nil || err.Error() != want {
			t.Errorf("ValidatePath(%q) = %v, want %s", p, err, want)
		}
	}
	long := "/" + strings.Repeat("x", 10000)
	if err := store.ValidatePath(long); err == nil || len(err.Error()) > 400 {
		t.Errorf("ValidatePath(10000 bytes) = %d-byte error, want a short one", len(fmt.Sprint(err)))
	}
}

func TestValidatePrefix(t *testing.T) {
	for p, ok := range map[string]bool{"/": true, "/a": true, "/a/b": true, "": false, "//": false, "/a/": false, "a": false} {
		if err := store.ValidatePrefix(p); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok %v", p, err, ok)
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
		if got := store.Under(tt.path, tt.prefix); got != tt.want {
			t.Errorf("Under(%q, %q) = %v, want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}

// FuzzValidatePath checks that ValidatePath never panics, that it refuses
// with ErrInvalidPath, and that what it accepts follows every rule, checked
// here independently.
func FuzzValidatePath(f *testing.F) {
	for _, p := range []string{"/a", "/a/b", "", "/", "a", "/a/", "/a//b", "/a/./b", "/a/../b", "/\x00", "/\\", "/\xff", "/é"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := store.ValidatePath(p)
		if err != nil {
			if !errors.Is(err, store.ErrInvalidPath) || !strings.HasPrefix(err.Error(), "store: invalid path ") {
				t.Fatalf("ValidatePath(%q) = %v, want ErrInvalidPath", p, err)
			}
			return
		}
		if !strings.HasPrefix(p, "/") || p == "/" || len(p) > store.MaxPathLen || !utf8.ValidString(p) {
			t.Fatalf("ValidatePath accepted %q", p)
		}
		for _, seg := range strings.Split(p[1:], "/") {
			if seg == "" || seg == "." || seg == ".." || len(seg) > store.MaxSegmentLen {
				t.Fatalf("ValidatePath accepted %q with segment %q", p, seg)
			}
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("ValidatePath accepted %q with byte %#x", p, c)
			}
		}
		if path.Clean(p) != p {
			t.Fatalf("ValidatePath accepted %q, which cleans to %q", p, path.Clean(p))
		}
		if store.ValidatePrefix(p) != nil || !store.Under(p, p) || !store.Under(p, "/") {
			t.Fatalf("accepted path %q is not a prefix under itself and /", p)
		}
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			if parent := p[:i]; store.ValidatePath(parent) != nil || !store.Under(p, parent) || store.Under(parent, p) {
				t.Fatalf("parent %q of accepted path %q", parent, p)
			}
		}
	})
}
