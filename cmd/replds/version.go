package main

import (
	"github.com/spf13/cobra"

	"github.com/replds/replds/buildinfo"
)

// setVersion gives root a --version flag that prints the build
// information on one line, as Status reports it (buildinfo.Info.String):
// module version, VCS revision when known, Go version.
func setVersion(root *cobra.Command) {
	bi := buildinfo.Read()
	root.Version = bi.Version
	root.SetVersionTemplate("replds " + bi.String() + "\n")
}

// newVersionCmd prints what --version prints.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of replds (module version, revision, Go version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := cmd.OutOrStdout().Write([]byte("replds " + buildinfo.Read().String() + "\n"))
			return err
		},
	}
}
