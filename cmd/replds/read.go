package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"replds/nodepath"
	repldspb "replds/proto"
)

// newCatCmd prints one node's data.
func newCatCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "cat [--server=S] PATH",
		Short: "Print the data of a node to standard output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nodepath.Validate(args[0]); err != nil {
				return err
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				resp, err := c.Get(ctx, &repldspb.GetRequest{Path: args[0]})
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(resp.Node.GetData())
				return err
			})
		},
	}
	cf.register(cmd)
	return cmd
}

// newLsCmd lists a directory.
func newLsCmd() *cobra.Command {
	var cf clientFlags
	var recursive bool
	cmd := &cobra.Command{
		Use:   "ls [--server=S] [-r] PATH",
		Short: "List the children of PATH (directories end in /), or every leaf under it with -r",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nodepath.ValidatePrefix(args[0]); err != nil {
				return err
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				stream, err := c.List(ctx, &repldspb.ListRequest{Path: args[0], Recursive: recursive})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for {
					resp, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					for _, e := range resp.Entries {
						if e.Dir {
							fmt.Fprintf(out, "%s/\n", e.Path)
						} else {
							fmt.Fprintln(out, e.Path)
						}
					}
				}
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every leaf under PATH")
	cf.register(cmd)
	return cmd
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
			if err := nodepath.Validate(args[0]); err != nil {
				return err
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				resp, err := c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{
					{Path: args[0], Delete: true, Recursive: recursive},
				}})
				if err == nil && len(resp.Nodes) == 0 {
					return fmt.Errorf("not found: %s", args[0])
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "delete every node under PATH")
	cf.register(cmd)
	return cmd
}
