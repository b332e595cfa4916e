package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// newDocsCmd writes the reference of every command, generated from the
// command tree itself, so that it cannot drift from --help: markdown
// (docs/cli, `make docs`) and man pages. Hidden: it is for building
// replds, not for running it.
func newDocsCmd() *cobra.Command {
	var mdDir, manDir string
	cmd := &cobra.Command{
		Use:    "docs [--markdown=DIR] [--man=DIR]",
		Short:  "Write the command reference as markdown and man pages",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if mdDir == "" && manDir == "" {
				return usageErrorf("give --markdown=DIR, --man=DIR or both")
			}
			root := cmd.Root()
			root.InitDefaultCompletionCmd()
			for _, c := range documented(root) {
				if mdDir != "" {
					if err := writeDoc(mdDir, docName(c)+".md", markdownDoc(c)); err != nil {
						return err
					}
				}
				if manDir != "" {
					if err := writeDoc(manDir, manName(c)+".1", manDoc(c)); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mdDir, "markdown", "", "write one markdown file per command into DIR")
	cmd.Flags().StringVar(&manDir, "man", "", "write one man page (section 1) per command into DIR")
	return cmd
}

// documented returns c and the commands under it that users see, parents
// first.
func documented(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && sub.Name() != "help" {
			out = append(out, documented(sub)...)
		}
	}
	return out
}

func docName(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "_") }
func manName(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "-") }

func writeDoc(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), data, 0o644)
}

// description is the long help of c, or its short one.
func description(c *cobra.Command) string {
	if c.Long != "" {
		return c.Long
	}
	return c.Short
}

// markdownDoc renders c as a markdown page.
func markdownDoc(c *cobra.Command) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n%s\n\n", c.CommandPath(), c.Short)
	if c.Runnable() {
		fmt.Fprintf(&b, "```\n%s\n```\n\n", c.UseLine())
	}
	if d := description(c); d != c.Short {
		fmt.Fprintf(&b, "%s\n\n", d)
	}
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(&b, "## Flags\n\n```\n%s```\n\n", c.LocalFlags().FlagUsages())
	}
	if subs := documented(c)[1:]; len(subs) > 0 {
		b.WriteString("## Commands\n\n")
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() && s.Name() != "help" {
				fmt.Fprintf(&b, "- [%s](%s.md): %s\n", s.CommandPath(), docName(s), s.Short)
			}
		}
		b.WriteString("\n")
	}
	if c.HasParent() {
		p := c.Parent()
		fmt.Fprintf(&b, "See also [%s](%s.md).\n", p.CommandPath(), docName(p))
	}
	return b.Bytes()
}

// roff escapes text for a man page: backslashes, and lines that would
// read as requests.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// manDoc renders c as a man page of section 1.
func manDoc(c *cobra.Command) []byte {
	var b bytes.Buffer
	name := manName(c)
	fmt.Fprintf(&b, ".TH %q 1 \"\" \"replds\" \"replds manual\"\n", strings.ToUpper(name))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", name, roff(c.Short))
	if c.Runnable() {
		fmt.Fprintf(&b, ".SH SYNOPSIS\n.nf\n%s\n.fi\n", roff(c.UseLine()))
	}
	fmt.Fprintf(&b, ".SH DESCRIPTION\n.nf\n%s\n.fi\n", roff(description(c)))
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(&b, ".SH OPTIONS\n.nf\n%s.fi\n", roff(c.LocalFlags().FlagUsages()))
	}
	var also []string
	if c.HasParent() {
		also = append(also, fmt.Sprintf("\\fB%s\\fR(1)", manName(c.Parent())))
	}
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() && s.Name() != "help" {
			also = append(also, fmt.Sprintf("\\fB%s\\fR(1)", manName(s)))
		}
	}
	if len(also) > 0 {
		fmt.Fprintf(&b, ".SH SEE ALSO\n%s\n", strings.Join(also, ", "))
	}
	return b.Bytes()
}
