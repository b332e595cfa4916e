package main

import (
	"github.com/spf13/cobra"

	"replds/buildinfo"
)

// setVersion gives root a --version flag that prints the build
// information on one line, as Status reports it (buildinfo.Info.String):
// module version, VCS revision when known, Go version.
func setVersion(root *cobra.Command) {
	bi := buildinfo.Read()
	root.Version = bi.Version
	root.SetVersionTemplate("replds " + bi.String() + "\n")
}
