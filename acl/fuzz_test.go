package acl_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/replds/replds/acl"
)

// FuzzParse checks that Parse never panics and that whatever parses
// survives a round trip: rendering the rules with Rule.String and parsing
// them again gives the same rules. Each parsed rule must also allow what it
// says. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("alice /data read\nsrv peer\n")
	f.Add("# comment\n\troot / w # all\r\n")
	f.Add("a /x rw\n")
	f.Fuzz(func(t *testing.T, in string) {
		a, err := acl.Parse(strings.NewReader(in))
		if err != nil {
			if a != nil {
				t.Fatalf("Parse(%q) = non-nil ACL with error %v", in, err)
			}
			return
		}
		rules := a.Rules()
		if a.Len() != len(rules) {
			t.Fatalf("Len() = %d, len(Rules()) = %d", a.Len(), len(rules))
		}
		var sb strings.Builder
		for _, r := range rules {
			sb.WriteString(r.String())
			sb.WriteByte('\n')
			if !a.Check(r.Identity, r.Op, r.Path) {
				t.Errorf("Check(%q, %v, %q) = false for a rule of the ACL", r.Identity, r.Op, r.Path)
			}
			if r.Op == acl.Read {
				if got := a.Readable(r.Identity, r.Path); !slices.Equal(got, []string{r.Path}) {
					t.Errorf("Readable(%q, %q) = %q, want the rule's path", r.Identity, r.Path, got)
				}
			}
		}
		b, err := acl.Parse(strings.NewReader(sb.String()))
		if err != nil {
			t.Fatalf("Parse(rendered %q) error: %v (from %q)", sb.String(), err, in)
		}
		if got := b.Rules(); !slices.Equal(got, rules) {
			t.Fatalf("round trip: Rules() = %v, want %v", got, rules)
		}
	})
}
