package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/backupjob"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
)

// newBackupCmd groups the backup commands.
func newBackupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Define, run and inspect backup jobs; list and verify backups",
		Long: `Backup jobs are nodes: /_replds/jobs/backup/NAME holds the spec, and the server
that the cluster chooses runs it and publishes /_replds/status/backup/NAME.
Defining a backup of a prefix needs read on it; managing jobs needs write on
/_replds/jobs (and /_replds/requests for "run"); "status" needs read on
/_replds/status. "list" and "verify" read the target directly, so they work
when the cluster is gone.`,
	}
	cmd.AddCommand(newBackupDefineCmd("create"), newBackupDefineCmd("set"), newJobRmCmd(backupjob.Kind, "backup job", "its backups stay in the target"),
		newBackupPauseCmd(true), newBackupPauseCmd(false), newBackupRunCmd(), newBackupStatusCmd(),
		newBackupListCmd(), newBackupVerifyCmd())
	return cmd
}

// specFlags are the flags of a backup spec.
type specFlags struct {
	prefix, target, schedule, full, within, verify string
	fulls                                          int
	encryptTo                                      []string
	paused                                         bool
}

func (f *specFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.prefix, "prefix", "/", "subtree to back up")
	fl.StringVar(&f.target, "target", "", "where backups go: file:///dir or s3://bucket/prefix?region=R&endpoint=URL")
	fl.StringVar(&f.schedule, "schedule", "", `when backups run: "every 15m", "@hourly", "@daily", or 5 cron fields "30 2 * * *" (UTC)`)
	fl.StringVar(&f.full, "full", "", `when a run is a full backup: a schedule, or "every N" (after N incrementals); default "@daily"`)
	fl.IntVar(&f.fulls, "retain-fulls", 0, "keep this many full backups with their incrementals (0: no count limit)")
	fl.StringVar(&f.within, "retain-within", "", `keep every backup made within this long ("30d", "12h")`)
	fl.StringArrayVar(&f.encryptTo, "encrypt-to", nil, "age X25519 recipient (age1...) to encrypt backups to (repeatable)")
	fl.StringVar(&f.verify, "verify", "", "schedule of verifications of the newest backup")
	fl.BoolVar(&f.paused, "paused", false, "define the job paused")
}

// apply sets the fields of spec whose flags were given (all for create).
func (f *specFlags) apply(fl *pflag.FlagSet, spec *backupjob.Spec, all bool) {
	set := func(name string) bool { return all || fl.Changed(name) }
	if set("prefix") {
		spec.Prefix = f.prefix
	}
	if set("target") {
		spec.Target = f.target
	}
	if set("schedule") {
		spec.Schedule = f.schedule
	}
	if set("full") {
		spec.Full = f.full
	}
	if set("retain-fulls") || set("retain-within") {
		if spec.Retain == nil {
			spec.Retain = &backupjob.Retain{}
		}
		if set("retain-fulls") {
			spec.Retain.Fulls = f.fulls
		}
		if set("retain-within") {
			spec.Retain.Within = f.within
		}
		if *spec.Retain == (backupjob.Retain{}) {
			spec.Retain = nil
		}
	}
	if set("encrypt-to") {
		spec.EncryptTo = f.encryptTo
	}
	if set("verify") {
		spec.Verify = f.verify
	}
	if set("paused") {
		spec.Paused = f.paused
	}
}

// readSpec reads a backup job's spec from the cluster.
func readSpec(ctx context.Context, c repldspb.RepldsClient, name string) (backupjob.Spec, error) {
	var spec backupjob.Spec
	err := readJobSpec(ctx, c, backupjob.Kind, "backup job", name, &spec)
	return spec, err
}

// writeSpec writes a backup job's spec; the server validates it and
// records its owner and exclusions.
func writeSpec(ctx context.Context, c repldspb.RepldsClient, name string, spec backupjob.Spec) error {
	spec.Owner, spec.Exclude = "", nil
	return writeJobSpec(ctx, c, backupjob.Kind, name, spec)
}

func newBackupDefineCmd(verb string) *cobra.Command {
	var cf clientFlags
	var sf specFlags
	cmd := &cobra.Command{
		Use:   verb + " NAME --target=URL --schedule=SCHEDULE [flags]",
		Short: "Define a backup job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := jobs.ValidateName(name); err != nil {
				return err
			}
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				err := defineJob(ctx, c, backupjob.Kind, "backup job", name, verb == "create", func(spec *backupjob.Spec) {
					sf.apply(cmd.Flags(), spec, verb == "create")
					spec.Owner, spec.Exclude = "", nil // the server records them
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup job %s %s (%s)\n", name, map[string]string{"create": "defined", "set": "changed"}[verb], jobs.DefPath(backupjob.Kind, name))
				return nil
			})
		},
	}
	if verb == "set" {
		cmd.Short = "Change a backup job: only the flags given change"
		cmd.Use = "set NAME [flags]"
	}
	sf.register(cmd.Flags())
	cf.registerWithTimeouts(cmd)
	return cmd
}

func newBackupPauseCmd(pause bool) *cobra.Command {
	var cf clientFlags
	verb, short := "resume", "Resume a paused backup job"
	if pause {
		verb, short = "pause", "Pause a backup job: nothing runs until it is resumed"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				spec, err := readSpec(ctx, c, name)
				if err != nil {
					return err
				}
				spec.Paused = pause
				if err := writeSpec(ctx, c, name, spec); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup job %s %sd\n", name, verb)
				return nil
			})
		},
	}
	cf.registerWithTimeouts(cmd)
	return cmd
}

func newBackupRunCmd() *cobra.Command {
	var cf clientFlags
	var full, verify bool
	cmd := &cobra.Command{
		Use:   "run NAME [--full | --verify]",
		Short: "Run a backup job now, on whichever server runs it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := jobs.ValidateName(name); err != nil {
				return err
			}
			req := backupjob.Request{Run: "incremental"}
			switch {
			case full && verify:
				return errors.New("--full and --verify exclude each other")
			case full:
				req.Run = "full"
			case verify:
				req.Run = "verify"
			}
			data, _ := json.Marshal(req)
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				if _, err := readSpec(ctx, c, name); err != nil {
					return err
				}
				_, err := c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: jobs.RequestPath(backupjob.Kind, name), Data: data}}})
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "asked backup job %s for a %s run; follow it with `replds backup status %s`\n", name, req.Run, name)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "make a full backup")
	cmd.Flags().BoolVar(&verify, "verify", false, "verify the newest backup instead")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// jobStatus is a status node with its job's name.
type jobStatus struct {
	Name string `json:"name"`
	jobs.Status
	Detail backupjob.Detail `json:"detail"`
}

func newBackupStatusCmd() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME] [--json]",
		Short: "Show what backup jobs did: runner, state, last and next run, error",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []jobStatus
			err := cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				names := args
				if len(names) == 0 {
					var err error
					if names, err = listJobs(ctx, c); err != nil {
						return err
					}
				}
				for _, name := range names {
					st := jobStatus{Name: name}
					resp, err := c.Get(ctx, &repldspb.GetRequest{Path: jobs.StatusPath(backupjob.Kind, name)})
					if err != nil {
						if len(args) == 0 {
							st.State = "not started"
							out = append(out, st)
							continue
						}
						return err
					}
					if st.Status, err = jobs.ParseStatus(resp.Node.GetData()); err != nil {
						return fmt.Errorf("status of %s unreadable: %w", name, err)
					}
					_ = json.Unmarshal(st.Status.Detail, &st.Detail)
					st.Status.Detail = nil
					out = append(out, st)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			printStatuses(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// listJobs returns the names of the backup jobs defined.
func listJobs(ctx context.Context, c repldspb.RepldsClient) ([]string, error) {
	return listJobNames(ctx, c, backupjob.Kind)
}

func printStatuses(w io.Writer, sts []jobStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tRUNNER\tLAST\tLAST RESULT\tNEXT\tRUNS\tSKIPS\tFAILURES\tVERIFIED")
	for _, s := range sts {
		last, result := "-", "-"
		if s.Last != nil {
			last = s.Last.Start.Format(time.RFC3339)
			result = fmt.Sprintf("%s %s %d nodes %s", s.Last.Kind, s.Last.Duration, s.Last.Nodes, humanBytes(s.Last.Bytes))
			if s.Last.Error != "" {
				result = s.Last.Kind + " FAILED: " + s.Last.Error
			} else if s.Last.Note != "" {
				result = s.Last.Kind + ": " + s.Last.Note
			}
		}
		next := "-"
		if !s.Next.IsZero() {
			next = s.Next.Format(time.RFC3339)
		}
		verified := "-"
		if v := s.Detail.Verified; v != nil {
			verified = "ok " + s.Detail.VerifiedID
			if !v.OK {
				verified = "FAILED " + s.Detail.VerifiedID + ": " + v.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.State, orDash(s.Runner), last, result, next, s.Runs, s.Skips, s.Failures, verified)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newBackupListCmd() *cobra.Command {
	var targetURL, job string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --target=URL [--job=NAME] [--json]",
		Short: "List the complete backups in a target (reads the target, not the cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if targetURL == "" {
				return errors.New("--target is required")
			}
			ctx := cmd.Context()
			tgt, err := target.Open(ctx, targetURL)
			if err != nil {
				return err
			}
			all, err := backup.List(ctx, tgt, job)
			if err != nil {
				return err
			}
			if asJSON {
				if all == nil {
					all = []backup.Manifest{}
				}
				return writeJSON(cmd.OutOrStdout(), all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tID\tKIND\tPARENT\tTIME\tPREFIX\tNODES\tBYTES\tSTORED\tENCRYPTED\tVERIFIED")
			for _, m := range all {
				verified := "-"
				if v := m.Verified; v != nil {
					verified = "ok " + v.Time.Format(time.RFC3339)
					if !v.OK {
						verified = "FAILED: " + v.Error
					}
				}
				enc := "NO"
				if m.Encrypted {
					enc = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Job, m.ID, m.Kind, orDash(m.Parent),
					m.Time.Format(time.RFC3339), m.Prefix, m.Nodes, humanBytes(m.Bytes), humanBytes(m.Stored), enc, verified)
			}
			tw.Flush()
			if len(all) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no complete backup in %s\n", tgt)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&targetURL, "target", "", "backup target URL (file:///dir or s3://bucket/prefix)")
	cmd.Flags().StringVar(&job, "job", "", "only this job's backups")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newBackupVerifyCmd() *cobra.Command {
	var rf restoreFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --target=URL --job=NAME [--id=ID] [--identity=FILE]",
		Short: "Verify a backup's chain: every checksum, and the content root where the data is readable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rf.from = cmd.Flag("target").Value.String()
			c, err := rf.choose(ctx, false)
			if err != nil {
				return err
			}
			last := c.last()
			v, err := backup.Verify(ctx, c.tgt, c.chain, c.ids)
			if err != nil {
				return err
			}
			if werr := backup.WriteVerification(ctx, c.tgt, last, v); werr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: result not recorded in the target: %v\n", werr)
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), struct {
					ID string `json:"id"`
					backup.Verification
				}{last.ID, v}); err != nil {
					return err
				}
			}
			ids := make([]string, len(c.chain))
			for i, m := range c.chain {
				ids[i] = m.ID
			}
			if !v.OK {
				return fmt.Errorf("backup %s FAILED verification: %s", last.ID, v.Error)
			}
			if !asJSON {
				how := "checksums only (encrypted: give --identity to check the content)"
				if v.Root {
					how = fmt.Sprintf("checksums and content root, %d live nodes", v.Nodes)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s verified (chain %s): %s\n", last.ID, strings.Join(ids, " <- "), how)
			}
			return nil
		},
	}
	var targetURL string
	cmd.Flags().StringVar(&targetURL, "target", "", "backup target URL (file:///dir or s3://bucket/prefix)")
	cmd.Flags().StringVar(&rf.job, "job", "", "backup job (required)")
	cmd.Flags().StringVar(&rf.id, "id", "", "backup to verify, with its chain (default: the newest)")
	cmd.Flags().StringVar(&rf.identity, "identity", "", "age identity file, to check the content of encrypted backups")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
