package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ParseError reports a malformed line of a rule file. Line counts from 1.
type ParseError struct {
	Line int
	Msg  string
}

// Error formats the error as "acl: line N: problem".
func (e *ParseError) Error() string {
	return fmt.Sprintf("acl: line %d: %s", e.Line, e.Msg)
}

// shapeHint is appended to messages about a line with the wrong number of
// fields.
const shapeHint = `(want "identity path operation" or "identity peer")`

// Parse reads a rule file from r (format in the package documentation) and
// returns its rules. A malformed line stops parsing with a *ParseError naming
// the line and the problem; a read error is returned wrapped. An input
// without rules gives an empty, non-nil ACL, which denies everything.
func Parse(r io.Reader) (*ACL, error) {
	var rules []Rule
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("acl: read: %w", err)
		}
		if line != "" {
			rule, ok, msg := parseLine(line)
			if msg != "" {
				return nil, &ParseError{Line: n, Msg: msg}
			}
			if ok {
				rules = append(rules, rule)
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	return newACL(rules), nil
}

// parseLine parses one line. It returns ok=false for a blank or comment line
// and a non-empty msg for a malformed one.
func parseLine(line string) (r Rule, ok bool, msg string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	switch len(f) {
	case 0:
		return Rule{}, false, ""
	case 1:
		return Rule{}, false, "missing operation " + shapeHint
	case 2, 3:
	default:
		return Rule{}, false, "too many fields " + shapeHint
	}
	if why := validIdentity(f[0]); why != "" {
		return Rule{}, false, fmt.Sprintf("invalid identity %q: %s", f[0], why)
	}
	r.Identity = f[0]
	opField := f[len(f)-1]
	op, known := parseOp(opField)
	if len(f) == 2 {
		switch {
		case !known && strings.HasPrefix(opField, "/"):
			return Rule{}, false, fmt.Sprintf("missing operation after path %q", opField)
		case !known:
			return Rule{}, false, unknownOpMsg(opField)
		case op != Peer:
			return Rule{}, false, fmt.Sprintf("%s needs a path", op)
		}
		r.Op = Peer
		return r, true, ""
	}
	if !known {
		return Rule{}, false, unknownOpMsg(opField)
	}
	if op == Peer {
		return Rule{}, false, "peer takes no path"
	}
	if why := validPath(f[1]); why != "" {
		return Rule{}, false, fmt.Sprintf("invalid path %q: %s", f[1], why)
	}
	r.Path, r.Op = f[1], op
	return r, true, ""
}

// Load reads and parses the rule file at path. A malformed file gives a
// *ParseError (which does not repeat the file name: callers add it).
func Load(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	defer f.Close()
	return Parse(f)
}
