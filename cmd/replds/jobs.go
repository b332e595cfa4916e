package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/backup/backupjob"
	"github.com/replds/replds/jobs"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/replicate"
	"github.com/replds/replds/server"
)

// jobKinds returns the kinds of job every replds server validates and
// runs; every server of a cluster must offer the same.
func jobKinds(s *server.Server) ([]jobs.Kind, error) {
	b, err := backupjob.New(backupjob.Config{
		Store:   s.DB(),
		Allowed: s.Allowed,
		Metrics: s.JobMetrics(backupjob.Kind),
	})
	if err != nil {
		return nil, err
	}
	rm, err := replicate.NewMetrics(s.Registry())
	if err != nil {
		return nil, err
	}
	r, err := replicate.New(replicate.Config{
		Writer:         s.Writer(),
		Vector:         s.DB().Vector,
		Walk:           s.DB().Walk,
		Allowed:        s.Allowed,
		ClusterOrigins: s.ClusterOrigins,
		Metrics:        rm,
	})
	if err != nil {
		return nil, err
	}
	return []jobs.Kind{b, r}, nil
}

// provisionFlags make a new cluster from a backup (server --restore-from).
type provisionFlags struct {
	from, job, identity string
}

func (f *provisionFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.from, "restore-from", "", "provision an empty cluster from this backup target's newest chain (merge mode; once)")
	fl.StringVar(&f.job, "restore-job", "", "backup job to provision from, with --restore-from")
	fl.StringVar(&f.identity, "restore-identity", "", "age identity file, with --restore-from, for encrypted backups")
}

func (f *provisionFlags) validate() error {
	if (f.from == "") != (f.job == "") {
		return errors.New("--restore-from and --restore-job go together")
	}
	return nil
}

// provisionMarker records in the data directory that the server was
// provisioned from a backup, so that it never is twice.
const provisionMarker = "restored-from.json"

// provision restores the newest chain of a backup into s in merge mode
// once s is ready (joined and caught up, or alone), if its store is still
// empty then (no peer held data) and it never did so before. Every server
// of a new cluster may be given the flags: merging the same nodes twice
// changes nothing.
func (f *provisionFlags) provision(ctx context.Context, s *server.Server, log *slog.Logger) error {
	marker := filepath.Join(s.DataDir(), provisionMarker)
	if _, err := os.Stat(marker); err == nil {
		log.Info("restore-from: already provisioned from a backup; not again", "marker", marker)
		return nil
	}
	for {
		if ok, _ := s.Ready(); ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	if st := s.DB().Stats(); st.Nodes+st.Tombstones > 0 {
		log.Info("restore-from: the cluster holds data; nothing restored", "nodes", st.Nodes)
		return nil
	}
	rf := restoreFlags{from: f.from, job: f.job, identity: f.identity}
	c, err := rf.choose(ctx, true)
	if err != nil {
		return fmt.Errorf("restore-from: %w", err)
	}
	last := c.last()
	log.Info("restore-from: provisioning from a backup", "target", c.tgt.String(), "id", last.ID, "chain", len(c.chain))
	start := time.Now()
	cnt, err := merge(ctx, c, s.Writer().Apply, false, nil)
	if err != nil {
		return fmt.Errorf("restore-from: %w", err)
	}
	log.Info("restore-from: done", "id", last.ID, "nodes", cnt.changed+cnt.same, "changed", cnt.changed, "took", time.Since(start).Round(time.Millisecond))
	rec, _ := json.Marshal(map[string]any{"target": c.tgt.String(), "job": f.job, "id": last.ID, "time": time.Now().UTC(), "nodes": cnt.changed})
	return os.WriteFile(marker, append(rec, '\n'), 0o600)
}

// listJobNames returns the names of the jobs of kind defined.
func listJobNames(ctx context.Context, c repldspb.RepldsClient, kind string) ([]string, error) {
	stream, err := c.List(ctx, &repldspb.ListRequest{Path: "/_replds/jobs/" + kind})
	if err != nil {
		return nil, err
	}
	var names []string
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Entries {
			if !e.Dir {
				names = append(names, e.Path[strings.LastIndexByte(e.Path, '/')+1:])
			}
		}
	}
}

// newJobRmCmd deletes the definition of a job of kind (a "backup job"
// for noun); stays says what the job's work leaves behind.
func newJobRmCmd(kind, noun, stays string) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a " + noun + " (" + stays + ")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := jobs.ValidateName(name); err != nil {
				return usageErrorf("%v", err)
			}
			path := jobs.DefPath(kind, name)
			return cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				if _, err := c.Get(ctx, &repldspb.GetRequest{Path: path}); err != nil {
					return err
				}
				if _, err := c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: path, Delete: true}}}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s deleted; %s\n", noun, name, stays)
				return nil
			})
		},
	}
	cf.registerWithTimeouts(cmd)
	return cmd
}

// readJobSpec decodes the spec of job kind/name (a "backup job" for noun)
// into spec.
func readJobSpec(ctx context.Context, c repldspb.RepldsClient, kind, noun, name string, spec any) error {
	resp, err := c.Get(ctx, &repldspb.GetRequest{Path: jobs.DefPath(kind, name)})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.Node.GetData(), spec); err != nil {
		return fmt.Errorf("%s %s: spec unreadable: %w", noun, name, err)
	}
	return nil
}

// writeJobSpec writes spec as the definition of job kind/name; the server
// validates it.
func writeJobSpec(ctx context.Context, c repldspb.RepldsClient, kind, name string, spec any) error {
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	_, err = c.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: jobs.DefPath(kind, name), Data: data}}})
	return err
}

// defineJob writes the spec of job kind/name (a "backup job" for noun):
// with create, a new spec that edit fills, refused if the job exists;
// else the current spec, changed by edit.
func defineJob[S any](ctx context.Context, c repldspb.RepldsClient, kind, noun, name string, create bool, edit func(*S)) error {
	var spec S
	err := readJobSpec(ctx, c, kind, noun, name, &spec)
	switch {
	case create && err == nil:
		return fmt.Errorf("%s %s exists; change it with `replds %s set`", noun, name, kind)
	case create && status.Code(err) == codes.NotFound:
		spec = *new(S)
	case err != nil:
		// Not readable (unavailable, no read right, a spec that does not
		// decode): never overwrite what may be there.
		return err
	}
	edit(&spec)
	return writeJobSpec(ctx, c, kind, name, spec)
}
