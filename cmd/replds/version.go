package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"replds/buildinfo"
)

// setVersion gives root a --version flag that prints the build
// information: module version, VCS revision when known, Go version.
func setVersion(root *cobra.Command) {
	bi := buildinfo.Read()
	root.Version = bi.Version
	rev := "unknown"
	if bi.Revision != "" {
		rev = bi.Revision
		if bi.Modified {
			rev += " (modified)"
		}
	}
	root.SetVersionTemplate(fmt.Sprintf("replds %s\nrevision: %s\ngo: %s\n", bi.Version, rev, bi.GoVersion))
}
