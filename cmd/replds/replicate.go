package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/replicate"
)

// newReplicateCmd groups the replication commands.
func newReplicateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replicate",
		Short: "Define, stop, start and inspect replication jobs from another cluster",
		Long: `Replication jobs are nodes of the destination cluster: /_replds/jobs/replicate/NAME
holds the spec, and the server the cluster chooses follows the source cluster and
publishes /_replds/status/replicate/NAME. --server names the destination cluster;
--source the source's servers. Defining a job into --dest-prefix needs write on it
(and write on /_replds/jobs); stop, abort and start need write on /_replds/requests;
status needs read on /_replds/status. In the source cluster the job is a client:
the identity of --source-tls-cert needs read on --source-prefix.`,
	}
	cmd.AddCommand(newReplicateDefineCmd("create"), newReplicateDefineCmd("set"), newJobRmCmd(replicate.Kind, "replication job", "what it replicated stays"),
		newReplicateStatusCmd(), newReplicateRequestCmd(replicate.ActionStop), newReplicateRequestCmd(replicate.ActionAbort),
		newReplicateRequestCmd(replicate.ActionStart))
	return cmd
}

// replicateSpecFlags are the flags of a replication spec.
type replicateSpecFlags struct {
	source, exclude                                  []string
	sourcePrefix, destPrefix, tlsCert, tlsKey, tlsCA string
	paused                                           bool
}

func (f *replicateSpecFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.source, "source", nil, "source cluster server HOST:PORT (repeatable or comma-separated)")
	fl.StringVar(&f.sourcePrefix, "source-prefix", "/", "subtree of the source cluster to replicate")
	fl.StringVar(&f.destPrefix, "dest-prefix", "", "where it lands in this cluster (default: the source prefix)")
	fl.StringArrayVar(&f.exclude, "exclude", nil, "prefix under --source-prefix not to replicate (repeatable)")
	fl.StringVar(&f.tlsCert, "source-tls-cert", "", "client certificate for the source cluster: a path on this cluster's servers")
	fl.StringVar(&f.tlsKey, "source-tls-key", "", "its private key: a path on this cluster's servers")
	fl.StringVar(&f.tlsCA, "source-tls-ca", "", "CA of the source cluster's servers: a path on this cluster's servers")
	fl.BoolVar(&f.paused, "paused", false, "define the job paused")
}

// apply sets the fields of spec whose flags were given (all for create).
func (f *replicateSpecFlags) apply(fl *pflag.FlagSet, spec *replicate.Spec, all bool) {
	set := func(name string) bool { return all || fl.Changed(name) }
	if set("source") {
		spec.Source = f.source
	}
	if set("source-prefix") {
		spec.SourcePrefix = f.sourcePrefix
	}
	if set("dest-prefix") {
		spec.DestPrefix = f.destPrefix
	}
	if set("exclude") {
		spec.Exclude = f.exclude
	}
	if set("source-tls-cert") {
		spec.TLSCert = f.tlsCert
	}
	if set("source-tls-key") {
		spec.TLSKey = f.tlsKey
	}
	if set("source-tls-ca") {
		spec.TLSCA = f.tlsCA
	}
	if set("paused") {
		spec.Paused = f.paused
	}
}

func readReplicateSpec(ctx context.Context, c repldspb.RepldsClient, name string) (replicate.Spec, error) {
	var spec replicate.Spec
	err := readJobSpec(ctx, c, replicate.Kind, "replication job", name, &spec)
	return spec, err
}

func newReplicateDefineCmd(verb string) *cobra.Command {
	var cf clientFlags
	var sf replicateSpecFlags
	cmd := &cobra.Command{
		Use:   verb + " NAME --source=HOST:PORT[,...] [--source-prefix=P] [--dest-prefix=Q] [flags]",
		Short: "Define a replication job in this (the destination) cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := jobs.ValidateName(name); err != nil {
				return err
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				err := defineJob(ctx, c, replicate.Kind, "replication job", name, verb == "create", func(spec *replicate.Spec) {
					sf.apply(cmd.Flags(), spec, verb == "create")
					spec.Owner = "" // the server records it
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "replication job %s %s (%s); follow it with `replds replicate status %s`\n", name,
					map[string]string{"create": "defined", "set": "changed"}[verb], jobs.DefPath(replicate.Kind, name), name)
				return nil
			})
		},
	}
	if verb == "set" {
		cmd.Short = "Change a replication job: only the flags given change (the job keeps its token)"
		cmd.Use = "set NAME [flags]"
	}
	sf.register(cmd.Flags())
	cf.registerWithTimeouts(cmd)
	return cmd
}

// replicateStatus is a replication job's status node with its name.
type replicateStatus struct {
	Name string `json:"name"`
	jobs.Status
	Detail replicate.Detail `json:"detail"`
}

// getReplicateStatus reads job name's status node (NotFound before the
// job's first runner published it).
func getReplicateStatus(ctx context.Context, c repldspb.RepldsClient, name string) (replicateStatus, error) {
	st := replicateStatus{Name: name}
	resp, err := c.Get(ctx, &repldspb.GetRequest{Path: jobs.StatusPath(replicate.Kind, name)})
	if err != nil {
		return st, err
	}
	if st.Status, err = jobs.ParseStatus(resp.Node.GetData()); err != nil {
		return st, fmt.Errorf("status of %s unreadable: %w", name, err)
	}
	_ = json.Unmarshal(st.Status.Detail, &st.Detail)
	st.Status.Detail = nil
	return st, nil
}

func newReplicateStatusCmd() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME] [--json]",
		Short: "Show replication jobs: state, runner, source in use, lag, counts, error",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []replicateStatus
			err := cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				names := args
				if len(names) == 0 {
					var err error
					if names, err = listJobNames(ctx, c, replicate.Kind); err != nil {
						return err
					}
				}
				for _, name := range names {
					st, err := getReplicateStatus(ctx, c, name)
					if err != nil {
						if len(args) == 0 {
							st.State = "not started"
							out = append(out, st)
							continue
						}
						return err
					}
					out = append(out, st)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []replicateStatus{}
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			printReplicateStatuses(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cf.register(cmd)
	return cmd
}

func printReplicateStatuses(w io.Writer, sts []replicateStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tRUNNER\tSOURCE\tLAG\tLAG(S)\tRECEIVED\tAPPLIED\tBYTES\tRECONNECTS\tERROR")
	for _, s := range sts {
		state := s.State
		if state == replicate.StateInitialCopy {
			state = fmt.Sprintf("%s (%d nodes)", state, s.Detail.Copied)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%d\t%d\t%s\t%d\t%s\n", s.Name, state, orDash(s.Runner), orDash(s.Detail.Source),
			s.Detail.LagChanges, s.Detail.LagSeconds, s.Detail.Received, s.Detail.Applied, humanBytes(s.Detail.Bytes), s.Detail.Reconnects, orDash(s.Error))
	}
	tw.Flush()
}

// newReplicateRequestCmd returns stop, abort or start: a request node
// write, and for stop and abort a wait until the job says it stopped.
func newReplicateRequestCmd(action string) *cobra.Command {
	var cf clientFlags
	var timeout time.Duration
	short := map[string]string{
		replicate.ActionStop:  "Stop a job gracefully: it applies everything the source held when asked, then stops (waits up to --timeout)",
		replicate.ActionAbort: "Stop a job at once (for a source that is gone)",
		replicate.ActionStart: "Resume a stopped job from its token",
	}[action]
	cmd := &cobra.Command{
		Use:   action + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := jobs.ValidateName(name); err != nil {
				return err
			}
			data, _ := json.Marshal(replicate.Request{Action: action})
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				if _, err := readReplicateSpec(ctx, c, name); err != nil {
					return err
				}
				resp, err := c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: jobs.RequestPath(replicate.Kind, name), Data: data}}})
				if err != nil {
					return err
				}
				if action == replicate.ActionStart {
					fmt.Fprintf(cmd.OutOrStdout(), "asked replication job %s to start; follow it with `replds replicate status %s`\n", name, name)
					return nil
				}
				var version uint64
				if len(resp.Nodes) > 0 {
					version = resp.Nodes[0].Version
				}
				return waitStopped(ctx, cmd.OutOrStdout(), c, name, version, timeout)
			})
		},
	}
	if action != replicate.ActionStart {
		cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the job to stop")
	}
	cf.register(cmd)
	return cmd
}

// waitStopped waits until job name's status says it stopped on the
// request of version (or a later one).
func waitStopped(ctx context.Context, w io.Writer, c repldspb.RepldsClient, name string, version uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var st replicateStatus
	var err error
	for {
		st, err = getReplicateStatus(ctx, c, name)
		if err == nil && st.Detail.Stopped && st.Detail.LastRequest >= version {
			fmt.Fprintf(w, "replication job %s stopped (applied %d nodes; resume with `replds replicate start %s`)\n", name, st.Detail.Applied, name)
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if err != nil {
		return fmt.Errorf("replication job %s: no status after %s: %w", name, timeout, err)
	}
	return fmt.Errorf("replication job %s not stopped after %s: state %s, %d changes behind the source (%s); it stops once it has applied what the source held when asked; `replds replicate abort %s` stops it at once",
		name, timeout, st.State, st.Detail.LagChanges, orDash(st.Error), name)
}
