package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/wire"
)

// newStatusCmd describes a server, or with --all every member of its
// cluster and whether they converged.
func newStatusCmd() *cobra.Command {
	var (
		cf     clientFlags
		all    bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status [--server=S ...] [--all] [--json]",
		Short: "Show a server's members, version vector, hash root and lag; --all asks every member",
		Long: `Show what a server holds (nodes, bytes, version vector, hash-tree root), how far
it lagged behind each peer at its last sync round with it, and the members it
knows with their state. The first --server that answers is asked.

With --all, every member is asked (in parallel, each within --dial-timeout and
--timeout), and the
report says plainly whether the cluster has converged: every member that has not
left is reachable, sees no other member as failed, and has the same root. A
cluster that has not converged makes the command exit non-zero, after the
report; the reasons name the servers concerned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			servers, err := cf.serverList()
			if err != nil {
				return err
			}
			opts, err := cf.dialOptions()
			if err != nil {
				return err
			}
			if cf.timeout <= 0 || cf.dialTimeout <= 0 {
				return usageErrorf("--timeout and --dial-timeout must be positive")
			}
			q := &statusQuery{cf: &cf, dial: opts}
			rep, err := q.collect(cmd.Context(), servers, all)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.writeText(out)
			}
			if err != nil {
				return err
			}
			if rep.Converged != nil && !*rep.Converged {
				return fmt.Errorf("cluster has not converged: %s", strings.Join(rep.Problems, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "ask every member and say whether the cluster converged")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// statusReport is what replds status prints (as JSON with --json).
type statusReport struct {
	// Servers holds the server asked (or, with --all, every member), by
	// member name.
	Servers []*serverReport `json:"servers"`
	// Converged is set with --all only.
	Converged *bool `json:"converged,omitempty"`
	// Problems says why the cluster has not converged.
	Problems []string `json:"problems,omitempty"`
	// Origins names the origins (incarnation ids) of vectors, where the
	// server they belong to was reached.
	Origins map[string]string `json:"origins,omitempty"`
}

// serverReport is one server's status, or why it could not be had.
type serverReport struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is the member state (alive, dead or left) as the first server
	// that answered sees it.
	State   string `json:"state,omitempty"`
	Reached bool   `json:"reached"`
	Error   string `json:"error,omitempty"`

	Version string `json:"version,omitempty"`
	Ready   bool   `json:"ready"`
	// JoinError is the server's last failure to join a configured peer
	// that has not joined since.
	JoinError  string            `json:"join_error,omitempty"`
	Origin     string            `json:"origin,omitempty"`
	Root       string            `json:"root,omitempty"`
	Nodes      uint64            `json:"nodes"`
	Bytes      uint64            `json:"bytes"`
	Tombstones uint64            `json:"tombstones"`
	Vector     map[string]uint64 `json:"vector,omitempty"`
	// Behind (with --all) counts the writes this server lacks that the
	// others have: the sum over origins of max(0, highest seq any server
	// reached has - this server's).
	Behind  *uint64       `json:"behind,omitempty"`
	Peers   []peerReport  `json:"peers,omitempty"`
	Members []memberEntry `json:"members,omitempty"`

	resp *repldspb.StatusResponse
}

// peerReport is the lag of a server behind one peer at its last sync round.
type peerReport struct {
	Name     string    `json:"name"`
	Changes  uint64    `json:"changes"`
	Seconds  float64   `json:"seconds"`
	LastSync time.Time `json:"last_sync"`
}

// memberEntry is a member as one server sees it.
type memberEntry struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

// statusQuery asks servers for their Status.
type statusQuery struct {
	cf   *clientFlags // the timeouts
	dial []grpc.DialOption
}

// ask returns addr's Status, within the timeouts.
func (q *statusQuery) ask(ctx context.Context, addr string) (*repldspb.StatusResponse, error) {
	conn, err := q.cf.connect(ctx, addr, q.dial)
	if errors.Is(err, errNoAnswer) {
		return nil, reachError{addr, q.cf.dialTimeout, err}
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := repldspb.NewRepldsClient(conn).Status(ctx, &repldspb.StatusRequest{})
	if err != nil {
		return nil, reachError{addr, q.cf.timeout, err}
	}
	return resp, nil
}

// reachError is why a server's Status could not be had, in one short line.
type reachError struct {
	addr    string
	timeout time.Duration
	err     error
}

func (e reachError) Error() string {
	if errors.Is(e.err, errNoAnswer) {
		return fmt.Sprintf("no answer within %v", e.timeout)
	}
	st, ok := status.FromError(e.err)
	if !ok {
		return e.err.Error()
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Sprintf("no answer within %v", e.timeout)
	case codes.Unavailable:
		// The transport's message ends with the cause ("connection
		// refused"); the rest repeats the address.
		msg := strings.Trim(st.Message(), `"`)
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return "unavailable: " + msg
	}
	return cliError(e.addr, e.err).Error()
}

func (e reachError) Unwrap() error { return e.err }

// exitCode is the exit code of replds status when no server was reached
// and e is the last reason.
func (e reachError) exitCode() int {
	if errors.Is(e.err, errNoAnswer) {
		return exitUnavailable
	}
	return exitCode(cliError(e.addr, e.err))
}

// collect asks the first server of servers that answers and, with all,
// every member any reached server knows of.
func (q *statusQuery) collect(ctx context.Context, servers []string, all bool) (*statusReport, error) {
	var first *repldspb.StatusResponse
	var firstAddr string
	var errs []error
	for _, addr := range servers {
		resp, err := q.ask(ctx, addr)
		if err == nil {
			first, firstAddr = resp, addr
			break
		}
		var re reachError
		if !errors.As(err, &re) {
			return nil, err
		}
		errs = append(errs, withExit(re.exitCode(), fmt.Errorf("server %s: %w", addr, err)))
	}
	if first == nil {
		return nil, joinErrors(errs)
	}
	rep := &statusReport{}
	if !all {
		sr := newServerReport(first.Name, firstAddr, first)
		sr.Members = membersOf(first)
		for _, m := range first.Members {
			if m.Name == first.Name {
				sr.State = m.State
			}
		}
		rep.Servers = []*serverReport{sr}
		return rep, nil
	}

	// Ask every member named by any server reached, until no new name
	// turns up. The first answer's view of member states wins.
	byName := map[string]*serverReport{first.Name: newServerReport(first.Name, firstAddr, first)}
	addMembers := func(resp *repldspb.StatusResponse) []*serverReport {
		var fresh []*serverReport
		for _, m := range resp.Members {
			if sr, ok := byName[m.Name]; ok {
				if sr.State == "" {
					sr.State = m.State
				}
				if sr.Addr == "" {
					sr.Addr = m.Addr
				}
				continue
			}
			sr := &serverReport{Name: m.Name, Addr: m.Addr, State: m.State}
			byName[m.Name] = sr
			fresh = append(fresh, sr)
		}
		return fresh
	}
	pending := addMembers(first)
	for len(pending) > 0 {
		var wg sync.WaitGroup
		for _, sr := range pending {
			if sr.Addr == "" {
				sr.Error = "no address known"
				continue
			}
			wg.Go(func() {
				resp, err := q.ask(ctx, sr.Addr)
				if err != nil {
					sr.Error = err.Error()
					return
				}
				sr.fill(resp)
			})
		}
		wg.Wait()
		var next []*serverReport
		for _, sr := range pending {
			if sr.resp != nil {
				next = append(next, addMembers(sr.resp)...)
			}
		}
		pending = next
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		rep.Servers = append(rep.Servers, byName[name])
	}
	rep.judge()
	rep.Origins = rep.originNames()
	return rep, nil
}

func newServerReport(name, addr string, resp *repldspb.StatusResponse) *serverReport {
	sr := &serverReport{Name: name, Addr: addr}
	sr.fill(resp)
	return sr
}

// fill records a server's answer.
func (sr *serverReport) fill(resp *repldspb.StatusResponse) {
	sr.resp = resp
	sr.Reached = true
	sr.Version = resp.Version
	sr.Ready = resp.Ready
	sr.JoinError = resp.LastJoinError
	sr.Origin = originText(resp.Origin)
	sr.Root = hex.EncodeToString(resp.Root)
	sr.Nodes, sr.Bytes, sr.Tombstones = resp.Nodes, resp.Bytes, resp.Tombstones
	sr.Vector = map[string]uint64{}
	for o, seq := range wire.VectorFromProto(resp.Vector) {
		sr.Vector[originText(o)] = seq
	}
	for _, p := range resp.Peers {
		pr := peerReport{Name: p.Name, Changes: p.Changes, Seconds: p.Seconds}
		if p.LastSyncUnixMs != 0 {
			pr.LastSync = time.UnixMilli(p.LastSyncUnixMs).UTC()
		}
		sr.Peers = append(sr.Peers, pr)
	}
}

func originText(o uint64) string { return fmt.Sprintf("%016x", o) }

func membersOf(resp *repldspb.StatusResponse) []memberEntry {
	var out []memberEntry
	for _, m := range resp.Members {
		out = append(out, memberEntry{Name: m.Name, Addr: m.Addr, State: m.State})
	}
	slices.SortFunc(out, func(a, b memberEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// judge computes each server's lag behind the others and whether the
// cluster converged, with the reasons why not.
func (rep *statusReport) judge() {
	most := map[string]uint64{}
	roots := map[string][]string{} // root -> servers
	for _, sr := range rep.Servers {
		if !sr.Reached {
			if sr.State != "left" {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s (%s, %s) is unreachable: %s", sr.Name, sr.Addr, sr.State, sr.Error))
			}
			continue
		}
		roots[sr.Root] = append(roots[sr.Root], sr.Name)
		for o, seq := range sr.Vector {
			most[o] = max(most[o], seq)
		}
		for _, m := range sr.resp.Members {
			if other, ok := rep.byName(m.Name); ok && !other.Reached {
				continue // reported as unreachable
			}
			if m.State == "dead" {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s sees %s as %s", sr.Name, m.Name, m.State))
			}
		}
	}
	for _, sr := range rep.Servers {
		if !sr.Reached {
			continue
		}
		var behind uint64
		for o, seq := range most {
			behind += seq - sr.Vector[o]
		}
		sr.Behind = &behind
	}
	if len(roots) > 1 {
		var groups []string
		for _, root := range slices.Sorted(maps.Keys(roots)) {
			groups = append(groups, fmt.Sprintf("%s has %s", strings.Join(roots[root], ", "), short(root)))
		}
		rep.Problems = append(rep.Problems, "hash roots differ: "+strings.Join(groups, "; "))
	}
	converged := len(rep.Problems) == 0 && len(roots) == 1
	rep.Converged = &converged
}

// byName returns the report of the named server.
func (rep *statusReport) byName(name string) (*serverReport, bool) {
	for _, sr := range rep.Servers {
		if sr.Name == name {
			return sr, true
		}
	}
	return nil, false
}

// short abbreviates a hex hash to the 16 digits every text output uses
// (origins have as many); --json has them whole.
func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// originNames maps origins to the names of the reached servers they
// belong to.
func (rep *statusReport) originNames() map[string]string {
	names := map[string]string{}
	for _, sr := range rep.Servers {
		if sr.Reached {
			names[sr.Origin] = sr.Name
		}
	}
	return names
}

// vectorText renders a vector with origins named where known
// (name=seq), others by their origin (16 hex digits, as everywhere).
func vectorText(v map[string]uint64, names map[string]string) string {
	if len(v) == 0 {
		return "(empty)"
	}
	var parts []string
	for _, o := range slices.Sorted(maps.Keys(v)) {
		name, ok := names[o]
		if !ok {
			name = o
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, v[o]))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeText prints the report for people.
func (rep *statusReport) writeText(w io.Writer) error {
	names := rep.originNames()
	var b strings.Builder
	if rep.Converged == nil {
		sr := rep.Servers[0]
		fmt.Fprintf(&b, "server %s at %s\n", sr.Name, sr.Addr)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  version\t%s\n", sr.Version)
		fmt.Fprintf(tw, "  ready\t%s\n", yesNo(sr.Ready))
		if sr.JoinError != "" {
			fmt.Fprintf(tw, "  join error\t%s\n", sr.JoinError)
		}
		fmt.Fprintf(tw, "  origin\t%s\n", sr.Origin)
		fmt.Fprintf(tw, "  nodes\t%d (%s), %d tombstones\n", sr.Nodes, humanBytes(sr.Bytes), sr.Tombstones)
		fmt.Fprintf(tw, "  root\t%s\n", short(sr.Root))
		fmt.Fprintf(tw, "  vector\t%s\n", vectorText(sr.Vector, names))
		if len(sr.Peers) == 0 {
			fmt.Fprintf(tw, "  lag\tno sync round with a peer yet\n")
		}
		for i, p := range sr.Peers {
			label := ""
			if i == 0 {
				label = "lag"
			}
			fmt.Fprintf(tw, "  %s\tbehind %s: %d changes, %.1fs (synced %s ago)\n", label, p.Name, p.Changes, p.Seconds,
				time.Since(p.LastSync).Round(100*time.Millisecond))
		}
		tw.Flush()
		fmt.Fprintf(&b, "members (%d):\n", len(sr.Members))
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  NAME\tADDRESS\tSTATE\n")
		for _, m := range sr.Members {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", m.Name, m.Addr, m.State)
		}
		tw.Flush()
		_, err := io.WriteString(w, b.String())
		return err
	}

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tADDRESS\tSTATE\tREADY\tNODES\tBYTES\tROOT\tBEHIND\n")
	for _, sr := range rep.Servers {
		if !sr.Reached {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\tunreachable\t-\n", sr.Name, sr.Addr, sr.State)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n", sr.Name, sr.Addr, sr.State, yesNo(sr.Ready),
			sr.Nodes, humanBytes(sr.Bytes), short(sr.Root), *sr.Behind)
	}
	tw.Flush()
	fmt.Fprintf(&b, "vectors (writes seen, per origin server):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, sr := range rep.Servers {
		if sr.Reached {
			fmt.Fprintf(tw, "  %s\t%s\n", sr.Name, vectorText(sr.Vector, names))
		}
	}
	tw.Flush()
	if *rep.Converged {
		reached, root := 0, ""
		for _, sr := range rep.Servers {
			if sr.Reached {
				reached, root = reached+1, sr.Root
			}
		}
		fmt.Fprintf(&b, "converged: yes (%d servers, same root %s)\n", reached, short(root))
	} else {
		fmt.Fprintf(&b, "converged: NO\n")
		for _, p := range rep.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
