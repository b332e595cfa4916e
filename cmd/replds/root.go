package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// newRootCmd assembles the replds command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "replds",
		Short:         "Replicated distribution of small, sensitive data (secrets, certificates, config)",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags bound to the environment or a --config file take their
		// values from there before any command runs.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return applyDefaults(cmd) },
	}
	root.AddCommand(
		newServerCmd(),
		newStoreCmd(),
		newPullCmd(),
		newCatCmd(),
		newLsCmd(),
		newRmCmd(),
		newCertCmd(),
		newStatusCmd(),
		newBackupCmd(),
		newReplicateCmd(),
		newRestoreCmd(),
		newWatchCmd(),
		newACLCmd(),
		newVersionCmd(),
		newDocsCmd(),
		newMembersCmd(),
	)
	setVersion(root)
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every mistake on the command line a usage error
// (exit 2): unknown commands and flags, bad flag values, wrong arguments.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf("%v (see %s --help)", err, cmd.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = unknownSubcommand
		}
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageErrorf("%v (see %s --help)", err, cmd.CommandPath())
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// unknownSubcommand is the RunE of a command that only groups others:
// without arguments it shows its help, otherwise it names the unknown
// command.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := "unknown command " + `"` + args[0] + `" for "` + cmd.CommandPath() + `"`
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s (see %s --help)", msg, cmd.CommandPath())
}
