package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/replds/replds/acl"
	"github.com/replds/replds/nodepath"
)

// newACLCmd groups the offline ACL tools.
func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Check an ACL file offline",
	}
	cmd.AddCommand(newACLCheckCmd())
	return cmd
}

// newACLCheckCmd checks an ACL file as a server would load it, and
// optionally one request against it.
func newACLCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE [IDENTITY PATH read|write | IDENTITY peer]",
		Short: "Check that an ACL file loads, and whether it allows IDENTITY an operation",
		Long: `Load FILE as a server's --acls would and report its rules, or the line that
is wrong (exit 1). Given IDENTITY PATH OP (read, write, r or w), or
IDENTITY peer, say whether the file allows it and by which rule: exit 0 if
allowed, 4 (permission denied) if not. Nothing is sent anywhere.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 || len(args) == 4:
			case len(args) == 3 && args[2] == "peer":
			default:
				return fmt.Errorf("want FILE, FILE IDENTITY PATH OP or FILE IDENTITY peer; got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := acl.Load(args[0])
			if err != nil {
				return localError(fmt.Errorf("%s: %w", args[0], err), exitFailure)
			}
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				ids := map[string]bool{}
				for _, r := range a.Rules() {
					ids[r.Identity] = true
				}
				fmt.Fprintf(out, "%s: %d rules for %d identities; everything else is denied\n", args[0], a.Len(), len(ids))
				return nil
			}
			id, p, opText := args[1], "", args[2]
			if len(args) == 4 {
				p, opText = args[2], args[3]
				if err := nodepath.Validate(p); err != nil {
					return localError(err, exitUsage)
				}
			}
			op, err := acl.ParseOp(opText)
			if err != nil {
				return localError(err, exitUsage)
			}
			// As a rule that would allow it is written.
			request := fmt.Sprintf("%s %s %s", id, p, op)
			if op == acl.Peer {
				request = id + " peer"
			}
			if !a.Check(id, op, p) {
				return withExit(exitPermission, fmt.Errorf("denied: %s (no rule of %s allows it)", request, args[0]))
			}
			fmt.Fprintf(out, "allowed: %s, by the rule %q\n", request, allowingRule(a, id, op, p))
			return nil
		},
	}
}

// allowingRule returns the first rule of a that alone allows id to do op
// on p: each rule is checked on its own by the same Check the servers use.
func allowingRule(a *acl.ACL, id string, op acl.Op, p string) string {
	for _, r := range a.Rules() {
		if r.Identity != id || r.Op != op {
			continue
		}
		one, err := acl.Parse(strings.NewReader(r.String()))
		if err == nil && one.Check(id, op, p) {
			return r.String()
		}
	}
	return "" // not reached: a allows it, so one of its rules does
}
