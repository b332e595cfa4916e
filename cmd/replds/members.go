package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
)

// newMembersCmd groups the membership commands.
func newMembersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "Manage cluster members",
	}
	cmd.AddCommand(newMembersForgetCmd())
	return cmd
}

// newMembersForgetCmd makes every live member stop listing a member that
// failed or left, before --reap-dead-after.
func newMembersForgetCmd() *cobra.Command {
	var (
		cf      clientFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "forget NAME [--server=S ...]",
		Short: "Stop listing a member that failed or left, on every live member",
		Long: `Ask every live member of the cluster (found through the first --server that
answers) to stop listing NAME, a member that failed or left, without waiting
for --reap-dead-after. A live member cannot be forgotten. With ACLs it takes
write permission on /_replds/members.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if timeout <= 0 {
				return errors.New("--timeout must be positive")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var resp *repldspb.StatusResponse
			if err := cf.call(ctx, func(ctx context.Context, c repldspb.RepldsClient) (err error) {
				resp, err = c.Status(ctx, &repldspb.StatusRequest{})
				return err
			}); err != nil {
				return err
			}
			opts, err := cf.dialOptions()
			if err != nil {
				return err
			}
			forgot, known := 0, false
			var errs []error
			for _, m := range resp.Members {
				if m.Name == name {
					known = true
				}
				if m.State != "alive" || m.Name == name {
					continue
				}
				switch err := forgetOn(ctx, m.Addr, opts, name); status.Code(err) {
				case codes.OK:
					forgot++
				case codes.NotFound: // that member did not list it
				default:
					errs = append(errs, fmt.Errorf("member %s: %w", m.Name, cliError(m.Addr, err)))
				}
			}
			if !known && forgot == 0 && len(errs) == 0 {
				return fmt.Errorf("no member %s", name)
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "forgot %s on %d members\n", name, forgot)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long the whole command may take")
	return cmd
}

// forgetOn asks the server at addr to forget member name.
func forgetOn(ctx context.Context, addr string, opts []grpc.DialOption, name string) error {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = repldspb.NewRepldsClient(conn).ForgetMember(ctx, &repldspb.ForgetMemberRequest{Name: name})
	return err
}
