package acl_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/replds/replds/acl"
)

// mustParse parses text or fails the test.
func mustParse(t testing.TB, text string) *acl.ACL {
	t.Helper()
	a, err := acl.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(%q) error: %v", text, err)
	}
	return a
}

// writeFile writes a rule file in a temp dir and returns its path.
func writeFile(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "acls")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseOp(t *testing.T) {
	tests := []struct {
		in      string
		want    acl.Op
		wantErr bool
	}{
		{"read", acl.Read, false},
		{"r", acl.Read, false},
		{"write", acl.Write, false},
		{"w", acl.Write, false},
		{"peer", acl.Peer, false},
		{"rw", 0, true},
		{"READ", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := acl.ParseOp(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseOp(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	_, err := acl.ParseOp("rw")
	if want := `acl: unknown operation "rw" (want read, write, r, w or peer)`; err == nil || err.Error() != want {
		t.Errorf("ParseOp(%q) error = %v, want %q", "rw", err, want)
	}
}

func TestOp_String(t *testing.T) {
	tests := []struct {
		op   acl.Op
		want string
	}{
		{acl.Read, "read"},
		{acl.Write, "write"},
		{acl.Peer, "peer"},
		{acl.Op(0), "Op(0)"},
		{acl.Op(42), "Op(42)"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("Op(%d).String() = %q, want %q", int(tt.op), got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []acl.Rule
	}{
		{"empty", "", nil},
		{"only comments and blanks", "# header\n\n   \t\n  # indented comment\n", nil},
		{
			"all operations",
			"alice /data read\nbob /data/bob r\ncarol /secrets write\ndave /x w\nserver1 peer\n",
			[]acl.Rule{
				{Identity: "alice", Path: "/data", Op: acl.Read},
				{Identity: "bob", Path: "/data/bob", Op: acl.Read},
				{Identity: "carol", Path: "/secrets", Op: acl.Write},
				{Identity: "dave", Path: "/x", Op: acl.Write},
				{Identity: "server1", Op: acl.Peer},
			},
		},
		{
			"whitespace, trailing comments, CRLF, no final newline",
			"\talice\t /data  read   # alice reads data\r\nserver1 peer#trailing\r\nroot / w",
			[]acl.Rule{
				{Identity: "alice", Path: "/data", Op: acl.Read},
				{Identity: "server1", Op: acl.Peer},
				{Identity: "root", Path: "/", Op: acl.Write},
			},
		},
		{
			"duplicates kept in order",
			"a /x r\na /x read\n",
			[]acl.Rule{
				{Identity: "a", Path: "/x", Op: acl.Read},
				{Identity: "a", Path: "/x", Op: acl.Read},
			},
		},
		{
			"identity with punctuation and unicode",
			"host-1.example.com /data/host-1.example.com r\nΩmega /ü/é r\n",
			[]acl.Rule{
				{Identity: "host-1.example.com", Path: "/data/host-1.example.com", Op: acl.Read},
				{Identity: "Ωmega", Path: "/ü/é", Op: acl.Read},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustParse(t, tt.in)
			if got := a.Rules(); !slices.Equal(got, tt.want) {
				t.Errorf("Rules() = %v, want %v", got, tt.want)
			}
			if got := a.Len(); got != len(tt.want) {
				t.Errorf("Len() = %d, want %d", got, len(tt.want))
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"unknown operation", "a /x r\n# c\nb /y rw\n", 3, `unknown operation "rw" (want read, write, r, w or peer)`},
		{"unknown operation without path", "a rw\n", 1, `unknown operation "rw" (want read, write, r, w or peer)`},
		{"peer with path", "a /x r\n\n\n\nsrv /x peer\n", 5, "peer takes no path"},
		{"read without path", "a read\n", 1, "read needs a path"},
		{"write without path", "a w\n", 1, "write needs a path"},
		{"path without operation", "a /x\n", 1, `missing operation after path "/x"`},
		{"identity only", "\nalice # comment\n", 2, `missing operation (want "identity path operation" or "identity peer")`},
		{"too many fields", "a /x y r\n", 1, `too many fields (want "identity path operation" or "identity peer")`},
		{"relative path", "# c\nalice data r\n", 2, `invalid path "data": not absolute`},
		{"trailing slash", "a /x/ r\n", 1, `invalid path "/x/": trailing slash`},
		{"empty segment", "a /x//y r\n", 1, `invalid path "/x//y": empty segment`},
		{"dot segment", "a /x/./y r\n", 1, `invalid path "/x/./y": "." segment`},
		{"dotdot segment", "a /x/.. r\n", 1, `invalid path "/x/..": ".." segment`},
		{"backslash", `a /x\y r` + "\n", 1, `invalid path "/x\\y": backslash at byte 2`},
		{"control character in path", "a /x\x01y r\n", 1, `invalid path "/x\x01y": control character at byte 2`},
		{"invalid UTF-8 in path", "a /x\xff r\n", 1, `invalid path "/x\xff": invalid UTF-8`},
		{"control character in identity", "a\x00b /x r\n", 1, `invalid identity "a\x00b": control character`},
		{"invalid UTF-8 in identity", "\xfe /x r\n", 1, `invalid identity "\xfe": not valid UTF-8`},
		{"first error wins", "a /x rw\nb y r\n", 1, `unknown operation "rw" (want read, write, r, w or peer)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := acl.Parse(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, a.Rules())
			}
			var pe *acl.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v (%T) is not a *ParseError", tt.in, err, err)
			}
			if pe.Line != tt.line || pe.Msg != tt.msg {
				t.Errorf("Parse(%q) error = line %d %q, want line %d %q", tt.in, pe.Line, pe.Msg, tt.line, tt.msg)
			}
			want := fmt.Sprintf("acl: line %d: %s", tt.line, tt.msg)
			if err.Error() != want {
				t.Errorf("Parse(%q) error text = %q, want %q", tt.in, err.Error(), want)
			}
		})
	}
}

// failReader fails after returning its data.
type failReader struct{ data string }

var errRead = errors.New("disk on fire")

func (r *failReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, errRead
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParse_ReadError(t *testing.T) {
	_, err := acl.Parse(&failReader{data: "a /x r\n"})
	if !errors.Is(err, errRead) {
		t.Errorf("Parse(failing reader) error = %v, want wrapping %v", err, errRead)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "alice /data r\n")
	a, err := acl.Load(p)
	if err != nil {
		t.Fatalf("Load(%q) error: %v", p, err)
	}
	if !a.Check("alice", acl.Read, "/data/x") {
		t.Errorf("Load(%q).Check(alice, read, /data/x) = false, want true", p)
	}

	missing := filepath.Join(dir, "nope")
	if _, err := acl.Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(%q) error = %v, want os.ErrNotExist", missing, err)
	}

	bad := writeFile(t, dir, "alice /data r\nbob data r\n")
	var pe *acl.ParseError
	if _, err := acl.Load(bad); !errors.As(err, &pe) || pe.Line != 2 {
		t.Errorf("Load(bad) error = %v, want *ParseError on line 2", err)
	}
}

const policy = `
# readers
alice  /data/alice        read
alice  /data/shared       r
ro     /data              read
# writers
writer /data              write
writer /data/writer/own   read
root   /                  read
root   /                  write
srv1   peer
srv2   peer
srv2   /_replds           read
jobs   /_replds/jobs      write
`

func TestACL_Check(t *testing.T) {
	a := mustParse(t, policy)
	tests := []struct {
		id   string
		op   acl.Op
		path string
		want bool
	}{
		// Prefixes match on segment boundaries only.
		{"alice", acl.Read, "/data/alice", true},
		{"alice", acl.Read, "/data/alice/key", true},
		{"alice", acl.Read, "/data/alice/a/b/c", true},
		{"alice", acl.Read, "/data/alicex", false},
		{"alice", acl.Read, "/data/alic", false},
		{"alice", acl.Read, "/data", false},
		{"alice", acl.Read, "/", false},
		{"alice", acl.Read, "/data/shared/x", true},
		{"alice", acl.Read, "/data/bob", false},
		// Read does not imply write, write does not imply read.
		{"alice", acl.Write, "/data/alice/key", false},
		{"ro", acl.Read, "/data/anything", true},
		{"ro", acl.Write, "/data/anything", false},
		{"writer", acl.Write, "/data/x", true},
		{"writer", acl.Read, "/data/x", false},
		{"writer", acl.Read, "/data/writer/own/x", true},
		{"writer", acl.Write, "/datax", false},
		// The root covers everything but the reserved namespace, which
		// needs a rule naming it or a path under it.
		{"root", acl.Read, "/", true},
		{"root", acl.Read, "/a", true},
		{"root", acl.Read, "/_repldsx", true},
		{"root", acl.Write, "/_replds", false},
		{"root", acl.Write, "/_replds/jobs/backup/x", false},
		{"root", acl.Read, "/_replds/status/x", false},
		{"jobs", acl.Write, "/_replds/jobs/backup/x", true},
		{"jobs", acl.Write, "/_replds/status/backup/x", false},
		{"jobs", acl.Write, "/_replds", false},
		{"root", acl.Peer, "", false},
		// Peer ignores paths.
		{"srv1", acl.Peer, "", true},
		{"srv1", acl.Peer, "/anything", true},
		{"srv1", acl.Read, "/data", false},
		{"srv2", acl.Read, "/_replds/status/x", true},
		{"alice", acl.Peer, "", false},
		// Unknown identities, empty identity, invalid operations.
		{"mallory", acl.Read, "/data/alice", false},
		{"", acl.Read, "/data/alice", false},
		{"Alice", acl.Read, "/data/alice", false},
		{"alice", acl.Op(0), "/data/alice", false},
		{"alice", acl.Op(99), "/data/alice", false},
		// Non-canonical paths are denied, even under a covering rule.
		{"root", acl.Read, "", false},
		{"root", acl.Read, "data", false},
		{"alice", acl.Read, "/data/alice/", false},
		{"alice", acl.Read, "/data/alice/../bob", false},
		{"alice", acl.Read, "/data/alice//x", false},
		{"alice", acl.Read, "/data/alice/./x", false},
		{"alice", acl.Read, "/data/alice/x\x00", false},
	}
	for _, tt := range tests {
		if got := a.Check(tt.id, tt.op, tt.path); got != tt.want {
			t.Errorf("Check(%q, %v, %q) = %v, want %v", tt.id, tt.op, tt.path, got, tt.want)
		}
	}
}

func TestACL_Check_Empty(t *testing.T) {
	a := mustParse(t, "# no rules\n")
	for _, op := range []acl.Op{acl.Read, acl.Write, acl.Peer} {
		if a.Check("alice", op, "/x") {
			t.Errorf("empty ACL: Check(alice, %v, /x) = true, want false", op)
		}
	}
}

func TestACL_Nil(t *testing.T) {
	var a *acl.ACL
	for _, op := range []acl.Op{acl.Read, acl.Write, acl.Peer} {
		if !a.Check("anyone", op, "/x") {
			t.Errorf("nil ACL: Check(anyone, %v, /x) = false, want true", op)
		}
	}
	if got, want := a.Readable("anyone", "/data"), []string{"/data"}; !slices.Equal(got, want) {
		t.Errorf("nil ACL: Readable(anyone, /data) = %q, want %q", got, want)
	}
	if got := a.Rules(); got != nil {
		t.Errorf("nil ACL: Rules() = %v, want nil", got)
	}
	if got := a.Len(); got != 0 {
		t.Errorf("nil ACL: Len() = %d, want 0", got)
	}
}

func TestACL_Readable(t *testing.T) {
	a := mustParse(t, `
host1  /data/host1         r
multi  /data/b             r
multi  /data/a/x           r
multi  /data/a             r
multi  /data/a-b           r
multi  /data/a/y/z         r
multi  /data/b             read
multi  /other              r
multi  /data/c             w
multi  /dataz              r
root   /                   r
mon    /                   r
mon    /_replds/status     r
srv    peer
`)
	tests := []struct {
		id, prefix string
		want       []string
	}{
		{"host1", "/", []string{"/data/host1"}},
		{"host1", "/data", []string{"/data/host1"}},
		{"host1", "/data/host1", []string{"/data/host1"}},
		{"host1", "/data/host1/sub", []string{"/data/host1/sub"}},
		{"host1", "/data/host2", nil},
		{"host1", "/data/host", nil},
		// Nested paths removed, duplicates removed, sorted, write rules and
		// siblings sharing a name prefix ignored.
		{"multi", "/data", []string{"/data/a", "/data/a-b", "/data/b"}},
		{"multi", "/", []string{"/data/a", "/data/a-b", "/data/b", "/dataz", "/other"}},
		{"multi", "/data/a", []string{"/data/a"}},
		{"multi", "/data/c", nil},
		{"root", "/", []string{"/"}},
		{"root", "/x/y", []string{"/x/y"}},
		// "/" does not cover the reserved namespace.
		{"root", "/_replds", nil},
		{"root", "/_replds/status", nil},
		{"mon", "/", []string{"/"}},
		{"mon", "/_replds", []string{"/_replds/status"}},
		{"mon", "/_replds/status/backup", []string{"/_replds/status/backup"}},
		{"mon", "/_replds/jobs", nil},
		{"srv", "/", nil},
		{"nobody", "/", nil},
		{"host1", "data", nil},
		{"host1", "/data/", nil},
	}
	for _, tt := range tests {
		if got := a.Readable(tt.id, tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("Readable(%q, %q) = %q, want %q", tt.id, tt.prefix, got, tt.want)
		}
	}
}

func TestACL_RulesIsCopy(t *testing.T) {
	a := mustParse(t, "alice /x r\n")
	r := a.Rules()
	r[0].Path = "/"
	if a.Check("alice", acl.Read, "/y") {
		t.Error("modifying Rules() result changed the ACL")
	}
	if got := a.Rules()[0].Path; got != "/x" {
		t.Errorf("Rules()[0].Path = %q after modifying a copy, want /x", got)
	}
}

func TestRule_String(t *testing.T) {
	tests := []struct {
		r    acl.Rule
		want string
	}{
		{acl.Rule{Identity: "a", Path: "/x", Op: acl.Read}, "a /x read"},
		{acl.Rule{Identity: "a", Path: "/", Op: acl.Write}, "a / write"},
		{acl.Rule{Identity: "srv", Op: acl.Peer}, "srv peer"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestHolder_Reload(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "alice /a r\n")
	h, err := acl.NewHolder(p)
	if err != nil {
		t.Fatalf("NewHolder(%q) error: %v", p, err)
	}
	if h.Path() != p {
		t.Errorf("Path() = %q, want %q", h.Path(), p)
	}
	if !h.Get().Check("alice", acl.Read, "/a") {
		t.Fatal("initial rules: alice cannot read /a")
	}
	old := h.Get()

	// A good file replaces the rules.
	writeFile(t, dir, "alice /b r\n")
	if err := h.Reload(); err != nil {
		t.Fatalf("Reload() error: %v", err)
	}
	if a := h.Get(); a.Check("alice", acl.Read, "/a") || !a.Check("alice", acl.Read, "/b") {
		t.Errorf("after reload: rules = %v, want alice /b read", a.Rules())
	}
	// The old snapshot is unchanged.
	if !old.Check("alice", acl.Read, "/a") {
		t.Error("old snapshot changed by Reload")
	}

	// A bad file keeps the current rules and reports the error.
	writeFile(t, dir, "alice /b r\nalice /c rw\n")
	err = h.Reload()
	var pe *acl.ParseError
	if !errors.As(err, &pe) || pe.Line != 2 {
		t.Errorf("Reload(bad file) error = %v, want *ParseError on line 2", err)
	}
	if !h.Get().Check("alice", acl.Read, "/b") {
		t.Errorf("after failed reload: rules = %v, want alice /b read kept", h.Get().Rules())
	}

	// So does a missing file.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload(missing file) error = %v, want os.ErrNotExist", err)
	}
	if !h.Get().Check("alice", acl.Read, "/b") {
		t.Error("after failed reload of missing file: old rules lost")
	}
}

func TestNewHolder_Errors(t *testing.T) {
	dir := t.TempDir()
	if _, err := acl.NewHolder(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewHolder(missing) error = %v, want os.ErrNotExist", err)
	}
	bad := writeFile(t, dir, "x peer /a\n")
	var pe *acl.ParseError
	if _, err := acl.NewHolder(bad); !errors.As(err, &pe) {
		t.Errorf("NewHolder(bad) error = %v, want *ParseError", err)
	}
}

func TestHolder_NoFile(t *testing.T) {
	h, err := acl.NewHolder("")
	if err != nil {
		t.Fatalf("NewHolder(\"\") error: %v", err)
	}
	if err := h.Reload(); err != nil {
		t.Errorf("Reload() without file error: %v", err)
	}
	if a := h.Get(); a != nil {
		t.Errorf("Get() without file = %v, want nil", a.Rules())
	}
	if !h.Get().Check("anyone", acl.Write, "/x") {
		t.Error("no file: write denied, want everything allowed")
	}

	var nilHolder *acl.Holder
	if nilHolder.Get() != nil || nilHolder.Reload() != nil || nilHolder.Path() != "" {
		t.Error("nil *Holder: want nil ACL, nil error, empty path")
	}
}

// TestHolder_Concurrent runs readers against reloads; the race detector
// checks the swap.
func TestHolder_Concurrent(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "alice /a r\n")
	h, err := acl.NewHolder(p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				a := h.Get()
				// Every snapshot is one of the two files, never a mix.
				if a.Check("alice", acl.Read, "/a") == a.Check("alice", acl.Read, "/b") {
					t.Errorf("inconsistent snapshot: %v", a.Rules())
					return
				}
			}
		})
	}
	for i := range 50 {
		text := "alice /a r\n"
		if i%2 == 0 {
			text = "alice /b r\n"
		}
		writeFile(t, dir, text)
		if err := h.Reload(); err != nil {
			t.Fatalf("Reload() error: %v", err)
		}
	}
	wg.Wait()
}

func BenchmarkACL_Check(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, "host%d /data/hosts/h%d r\nhost%d /other w\n", i, i, i)
	}
	sb.WriteString("target /data/hosts/target r\n")
	a := mustParse(b, sb.String())
	b.ReportAllocs()
	for b.Loop() {
		if !a.Check("target", acl.Read, "/data/hosts/target/tls/key.pem") {
			b.Fatal("denied")
		}
	}
}
