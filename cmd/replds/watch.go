package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

// newWatchCmd prints the changes under a prefix as a server streams them,
// for debugging a pull: what a host following the prefix receives.
func newWatchCmd() *cobra.Command {
	var (
		cf       clientFlags
		asJSON   bool
		noReplay bool
	)
	cmd := &cobra.Command{
		Use:   "watch [--server=S] [--json] [--no-replay] PREFIX",
		Short: "Print the changes under PREFIX as they happen (what a pull of PREFIX receives)",
		Long: `Follow PREFIX as replds pull does and print one line per change: the time
of its version, "put" or "delete", its size, its origin and its path; never
its data. The current nodes come first (the replay a new pull receives; a
line "synced" ends it), unless --no-replay. Runs until interrupted; when the server goes
away, the command ends with an error (replds pull is the one that fails
over and resumes).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := args[0]
			if err := nodepath.ValidatePrefix(prefix); err != nil {
				return localError(err, exitUsage)
			}
			out := cmd.OutOrStdout()
			err := cf.call(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				stream, err := c.Watch(ctx, &repldspb.WatchRequest{Prefix: prefix})
				if err != nil {
					return err
				}
				synced := false
				for {
					resp, err := stream.Recv()
					if err != nil {
						if errors.Is(err, io.EOF) {
							return errors.New("the server ended the stream")
						}
						return err
					}
					if !synced && noReplay {
						synced = resp.Synced
						continue
					}
					if err := printWatch(out, resp, asJSON); err != nil {
						return err
					}
					synced = synced || resp.Synced
				}
			})
			if cmd.Context().Err() != nil {
				return nil // interrupted: the normal end
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	cmd.Flags().BoolVar(&noReplay, "no-replay", false, "print only changes made from now on")
	cf.registerWithDialTimeout(cmd)
	return cmd
}

// watchEvent is one line of replds watch --json.
type watchEvent struct {
	Event string     `json:"event"` // put, delete, reset, synced
	Path  string     `json:"path,omitempty"`
	Time  *time.Time `json:"time,omitempty"`
	// Version, Origin and Seq identify the write.
	Version uint64  `json:"version,omitempty"`
	Origin  string  `json:"origin,omitempty"`
	Seq     uint64  `json:"seq,omitempty"`
	Size    *uint64 `json:"size,omitempty"`
}

// watchEvents returns the events of one streamed batch.
func watchEvents(resp *repldspb.WatchResponse) []watchEvent {
	var evs []watchEvent
	if resp.GetReset_() {
		evs = append(evs, watchEvent{Event: "reset"})
	}
	for _, n := range resp.Nodes {
		ev := watchEvent{Event: "put", Path: n.Path, Time: versionTime(n.Version), Version: n.Version,
			Origin: originText(n.Origin), Seq: n.Seq}
		if n.Deleted {
			ev.Event = "delete"
		} else {
			size := uint64(len(n.Data))
			ev.Size = &size
		}
		evs = append(evs, ev)
	}
	if resp.Synced {
		evs = append(evs, watchEvent{Event: "synced"})
	}
	return evs
}

// printWatch prints one streamed batch, as text or JSON lines.
func printWatch(w io.Writer, resp *repldspb.WatchResponse, asJSON bool) error {
	for _, ev := range watchEvents(resp) {
		var err error
		switch {
		case asJSON:
			var b []byte
			if b, err = json.Marshal(ev); err == nil {
				_, err = fmt.Fprintf(w, "%s\n", b)
			}
		case ev.Event == "reset" || ev.Event == "synced":
			_, err = fmt.Fprintln(w, ev.Event)
		default:
			size := "-"
			if ev.Size != nil {
				size = humanBytes(*ev.Size)
			}
			_, err = fmt.Fprintf(w, "%s  %-6s  %10s  %s  %s\n", ev.Time.Format("2006-01-02 15:04:05.000"), ev.Event, size, ev.Origin, ev.Path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
