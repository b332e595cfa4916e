package main

import (
	"github.com/spf13/cobra"
)

// newRootCmd assembles the replds command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "replds",
		Short:         "Replicated distribution of small, sensitive data (secrets, certificates, config)",
		SilenceUsage:  true,
		SilenceErrors: true,
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
		newMembersCmd(),
	)
	setVersion(root)
	return root
}
