package nodepath

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of a path.
const (
	// MaxLen bounds the length of a whole path, in bytes.
	MaxLen = 4096
	// MaxSegmentLen bounds the length of one "/"-separated segment, in bytes.
	MaxSegmentLen = 255
	// MaxDepth bounds the number of segments. Every host that pulls a path
	// creates a directory per segment, so a deep path multiplies into work
	// on each of them; 64 is far beyond any layout seen in practice.
	MaxDepth = 64
)

// The reserved namespace. Nodes under Reserved belong to the cluster itself:
// job definitions under Jobs, job status under Status.
const (
	Reserved = "/_replds"
	Jobs     = Reserved + "/jobs"
	Status   = Reserved + "/status"
	Requests = Reserved + "/requests"
)

// ErrInvalid wraps every validation failure. Its text names no package: it
// reaches users as is ("invalid path \"/a/../b\": \"..\" segment").
var ErrInvalid = errors.New("invalid path")

// maxQuoted bounds how much of an offending path an error message repeats,
// so that a megabyte of garbage does not end up in a log line.
const maxQuoted = 256

// Validate reports whether p is a canonical absolute node path: it starts
// with "/", its segments are separated by single "/", none is empty, "." or
// "..", it has no trailing "/" and is not "/" itself (the root holds no
// data), it is valid UTF-8 without control characters (C0, DEL, C1) or
// backslashes, at most MaxLen bytes long, with at most MaxDepth segments
// of at most MaxSegmentLen bytes each. The error wraps ErrInvalid and
// names the path and the problem, e.g. `invalid path "/a/../b": ".."
// segment`.
func Validate(p string) error {
	if problem := Problem(p); problem != "" {
		return fmt.Errorf("%w %s: %s", ErrInvalid, Quote(p), problem)
	}
	return nil
}

// ValidatePrefix is Validate that also accepts "/", the whole tree.
func ValidatePrefix(p string) error {
	if p == "/" {
		return nil
	}
	return Validate(p)
}

// Problem returns what is wrong with p as a path, or "" if it is canonical.
// It is Validate without the error wrapping, for callers (the ACL parser)
// that phrase their own message.
func Problem(p string) string {
	switch {
	case p == "":
		return "empty"
	case p[0] != '/':
		return "not absolute"
	case p == "/":
		return "root holds no data"
	case len(p) > MaxLen:
		return fmt.Sprintf("longer than %d bytes", MaxLen)
	case !utf8.ValidString(p):
		return "invalid UTF-8"
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("control character at byte %d", i)
		case c == '\\':
			return fmt.Sprintf("backslash at byte %d", i)
		case c == 0xc2 && i+1 < len(p) && p[i+1] <= 0x9f:
			// C1 controls, U+0080-U+009F, are the UTF-8 pairs c2 80 to c2 9f
			// (p is valid UTF-8, so a c2 is always followed by 80-bf).
			return fmt.Sprintf("control character at byte %d", i)
		}
	}
	rest, depth := p[1:], 0
	for {
		seg, tail, more := strings.Cut(rest, "/")
		depth++
		switch {
		case seg == "" && !more:
			return "trailing slash"
		case seg == "":
			return "empty segment"
		case seg == ".":
			return `"." segment`
		case seg == "..":
			return `".." segment`
		case len(seg) > MaxSegmentLen:
			return fmt.Sprintf("segment longer than %d bytes", MaxSegmentLen)
		case depth > MaxDepth:
			return fmt.Sprintf("deeper than %d segments", MaxDepth)
		}
		if !more {
			return ""
		}
		rest = tail
	}
}

// Under reports whether path is prefix or lies beneath it, on segment
// boundaries: Under("/a/b/c", "/a/b") and Under("/a/b", "/a/b") hold,
// Under("/a/bc", "/a/b") does not. Every absolute path is under "/".
func Under(path, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(path, "/")
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// IsReserved reports whether p lies in the reserved namespace (Reserved or
// beneath it).
func IsReserved(p string) bool { return Under(p, Reserved) }

// Quote quotes p for an error or log message, cut to 256 bytes so that a
// megabyte of garbage never ends up in a log line.
func Quote(p string) string {
	if len(p) <= maxQuoted {
		return fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%q...", p[:maxQuoted])
}
