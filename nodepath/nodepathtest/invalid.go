// Package nodepathtest holds test tables for code that validates node paths.
package nodepathtest

import (
	"strings"

	"github.com/replds/replds/nodepath"
)

// InvalidPaths lists paths nodepath.Validate must refuse, with a word of the
// problem its error must name. Every layer that takes a path from outside
// (the store, the server's RPCs, the pull client) runs its checks on it.
var InvalidPaths = []struct {
	Name, Path, Problem string
}{
	{"empty", "", "empty"},
	{"relative", "a/b", "not absolute"},
	{"root", "/", "root"},
	{"double slash", "//", "empty segment"},
	{"empty segment", "/a//b", "empty segment"},
	{"trailing slash", "/a/", "trailing slash"},
	{"dot", "/a/./b", `"." segment`},
	{"dot last", "/a/.", `"." segment`},
	{"dotdot", "/a/../b", `".." segment`},
	{"NUL", "/a\x00b", "control character"},
	{"newline", "/a\nb", "control character"},
	{"DEL", "/a\x7f", "control character"},
	{"C1 control", "/a\u0085b", "control character"},
	{"backslash", `/a\b`, "backslash"},
	{"too long", "/" + strings.Repeat("abcdefg/", nodepath.MaxLen/8) + "x", "longer than"},
	{"segment too long", "/a/" + strings.Repeat("s", nodepath.MaxSegmentLen+1), "segment longer than"},
	{"too deep", strings.Repeat("/a", nodepath.MaxDepth+1), "deeper than"},
	{"invalid UTF-8", "/a/\xff", "UTF-8"},
}
