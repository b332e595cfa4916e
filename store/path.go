package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Path limits, in bytes.
const (
	// MaxPathLen bounds the length of a whole path.
	MaxPathLen = 4096
	// MaxSegmentLen bounds the length of one "/"-separated segment.
	MaxSegmentLen = 255
)

// maxQuoted bounds how much of an offending path an error message repeats,
// so that a megabyte of garbage does not end up in a log line.
const maxQuoted = 256

// ValidatePath reports whether p is a canonical absolute node path: it starts
// with "/", its segments are separated by single "/", none is empty, "." or
// "..", it has no trailing "/" and is not "/" itself (the root holds no data),
// it is valid UTF-8 without control characters (below 0x20, 0x7f) or
// backslashes, at most MaxPathLen bytes long with segments of at most
// MaxSegmentLen bytes. The error wraps ErrInvalidPath and names the path and
// the problem, e.g. `store: invalid path "/a/../b": ".." segment`.
func ValidatePath(p string) error {
	if problem := pathProblem(p); problem != "" {
		return invalidPath(p, problem)
	}
	return nil
}

// ValidatePrefix is ValidatePath that also accepts "/", the whole tree.
func ValidatePrefix(p string) error {
	if p == "/" {
		return nil
	}
	return ValidatePath(p)
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

// pathProblem returns what is wrong with p, or "" if it is canonical.
func pathProblem(p string) string {
	switch {
	case p == "":
		return "empty"
	case p[0] != '/':
		return "not absolute"
	case p == "/":
		return "root holds no data"
	case len(p) > MaxPathLen:
		return fmt.Sprintf("longer than %d bytes", MaxPathLen)
	case !utf8.ValidString(p):
		return "invalid UTF-8"
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("control character at byte %d", i)
		case c == '\\':
			return fmt.Sprintf("backslash at byte %d", i)
		}
	}
	rest := p[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
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
		}
		if !more {
			return ""
		}
		rest = tail
	}
}

func invalidPath(p, problem string) error {
	return fmt.Errorf("%w %s: %s", ErrInvalidPath, quotePath(p), problem)
}

// quotePath quotes p for an error message, cut to maxQuoted bytes.
func quotePath(p string) string {
	if len(p) <= maxQuoted {
		return fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%q...", p[:maxQuoted])
}
