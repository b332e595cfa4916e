package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/lww"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

// nodeMeta is what cat --meta and ls -l say of a node, and their JSON.
type nodeMeta struct {
	Path string `json:"path"`
	Dir  bool   `json:"dir,omitempty"`
	// Version is the node's hybrid logical clock value; Time its wall
	// clock part, when the write was accepted.
	Version uint64     `json:"version,omitempty"`
	Time    *time.Time `json:"time,omitempty"`
	Size    *uint64    `json:"size,omitempty"`
	// Origin is the incarnation id of the server that accepted the write,
	// as replds status names it.
	Origin string `json:"origin,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

// versionTime returns the wall clock part of a version: its upper 48 bits
// are Unix milliseconds.
func versionTime(v uint64) *time.Time {
	t := lww.WallTime(v).UTC()
	return &t
}

func leafMeta(path string, version, origin, seq, size uint64) nodeMeta {
	return nodeMeta{Path: path, Version: version, Time: versionTime(version), Size: &size, Origin: originText(origin), Seq: seq}
}

// notFound is the error for a path the server has no node at.
func notFound(p string) error {
	return withExit(exitNotFound, fmt.Errorf("%s: node not found", p))
}

// newCatCmd prints one node's data, or its metadata.
func newCatCmd() *cobra.Command {
	var (
		cf     clientFlags
		meta   bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "cat [--server=S] [--meta [--json]] PATH",
		Short: "Print the data of a node to standard output, or with --meta its version, time, size and origin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := nodepath.Validate(p); err != nil {
				return localError(err, exitUsage)
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				resp, err := c.Get(ctx, &repldspb.GetRequest{Path: p})
				if status.Code(err) == codes.NotFound {
					if isDir(ctx, c, p) {
						return fmt.Errorf("%s: is a directory (replds ls %s lists it)", p, p)
					}
					return notFound(p)
				}
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				n := resp.Node
				if !meta && !asJSON {
					_, err = out.Write(n.GetData())
					return err
				}
				m := leafMeta(n.Path, n.Version, n.Origin, n.Seq, uint64(len(n.Data)))
				if asJSON {
					return writeJSON(out, m)
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "path\t%s\n", m.Path)
				fmt.Fprintf(tw, "version\t%d\n", m.Version)
				fmt.Fprintf(tw, "time\t%s\n", m.Time.Format(time.RFC3339Nano))
				fmt.Fprintf(tw, "size\t%s\n", humanBytes(*m.Size))
				fmt.Fprintf(tw, "origin\t%s (write %d of that server)\n", m.Origin, m.Seq)
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&meta, "meta", false, "print the node's version, time, size and origin instead of its data")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the metadata as JSON (implies --meta)")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// isDir reports whether p is a directory on the server c: a List of it
// lists something other than p itself.
func isDir(ctx context.Context, c repldspb.RepldsClient, p string) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.List(ctx, &repldspb.ListRequest{Path: p})
	if err != nil {
		return false
	}
	resp, err := stream.Recv()
	return err == nil && len(resp.Entries) > 0 && (resp.Entries[0].Dir || resp.Entries[0].Path != p)
}

// writeJSON writes v indented, one value.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newLsCmd lists a directory.
func newLsCmd() *cobra.Command {
	var (
		cf        clientFlags
		recursive bool
		long      bool
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "ls [--server=S] [-r] [-l | --json] PATH",
		Short: "List the children of PATH (directories end in /), or every leaf under it with -r",
		Long: `List the children of PATH (directories end in /), or with -r every leaf
under it. With -l, each leaf also shows the time of its version, its size and
the server that accepted its write (an origin, as replds status names them);
--json prints a JSON array of the same.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := nodepath.ValidatePrefix(p); err != nil {
				return localError(err, exitUsage)
			}
			var entries []*repldspb.ListEntry
			err := cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				if cf.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, cf.timeout)
					defer cancel()
				}
				stream, err := c.List(ctx, &repldspb.ListRequest{Path: p, Recursive: recursive})
				if err != nil {
					return err
				}
				entries = entries[:0]
				for {
					resp, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if status.Code(err) == codes.NotFound {
						return notFound(p)
					}
					if err != nil {
						return err
					}
					entries = append(entries, resp.Entries...)
				}
			})
			if err != nil {
				return err
			}
			return writeList(cmd.OutOrStdout(), entries, long, asJSON)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every leaf under PATH")
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show each leaf's version time, size and origin")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of entries (path, dir, version, time, size, origin)")
	cmd.MarkFlagsMutuallyExclusive("long", "json")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// writeList prints the entries of ls: paths, a table (long) or JSON.
func writeList(out io.Writer, entries []*repldspb.ListEntry, long, asJSON bool) error {
	if asJSON {
		list := make([]nodeMeta, 0, len(entries))
		for _, e := range entries {
			if e.Dir {
				list = append(list, nodeMeta{Path: e.Path, Dir: true})
			} else {
				list = append(list, leafMeta(e.Path, e.Version, e.Origin, 0, e.Size))
			}
		}
		return writeJSON(out, list)
	}
	if !long {
		for _, e := range entries {
			if e.Dir {
				fmt.Fprintf(out, "%s/\n", e.Path)
			} else {
				fmt.Fprintln(out, e.Path)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, e := range entries {
		if e.Dir {
			fmt.Fprintf(tw, "%-23s\t%10s\t%-16s\t%s/\n", "-", "-", "-", e.Path)
			continue
		}
		fmt.Fprintf(tw, "%s\t%10s\t%s\t%s\n", versionTime(e.Version).Format("2006-01-02 15:04:05.000"),
			humanBytes(e.Size), originText(e.Origin), e.Path)
	}
	return tw.Flush()
}

// newRmCmd deletes a node, or a subtree with -r.
func newRmCmd() *cobra.Command {
	var cf clientFlags
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm [--server=S] [-r] PATH",
		Short: "Delete a node, or with -r every node under PATH",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := nodepath.Validate(p); err != nil {
				return localError(err, exitUsage)
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				resp, err := c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{
					{Path: p, Delete: true, Recursive: recursive},
				}})
				if err == nil && len(resp.Nodes) == 0 {
					return notFound(p)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "delete every node under PATH")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// humanBytes renders a size for people: bytes below 1 KiB, else one
// decimal in the largest binary unit that keeps the number at least 1.
func humanBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
