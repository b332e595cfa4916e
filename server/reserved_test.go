package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
	"github.com/replds/replds/store"
)

// reservedRules let "root" read and write "/", and "jobber" also define
// jobs and read the reserved namespace.
const reservedRules = `
root   / write
root   / read
jobber / write
jobber / read
jobber /_replds/jobs write
jobber /_replds read
status /_replds/status write
`

// testKind is a job kind "test" whose spec is JSON with a required
// "prefix" field; the validator records the writer as "owner", and refuses
// a prefix of "/secret" as a right the writer lacks. Its jobs publish a
// status and wait, counting requests.
type testKind struct {
	mu       sync.Mutex
	runs     map[string]int // runner -> instances started
	requests []string
}

func (k *testKind) Name() string { return "test" }

func (k *testKind) Validate(identity, name string, spec []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(spec, &v); err != nil {
		return nil, fmt.Errorf("spec is not JSON: %w", err)
	}
	if _, ok := v["prefix"]; !ok {
		return nil, errors.New(`missing field "prefix"`)
	}
	if v["prefix"] == "/secret" {
		return nil, fmt.Errorf("%w: %q may not read /secret", jobs.ErrPermission, identity)
	}
	v["owner"] = identity
	return json.Marshal(v)
}

func (k *testKind) ValidateRequest(identity, name string, data []byte) error {
	if string(data) == "bad" {
		return errors.New(`request: field "run": bad`)
	}
	return nil
}

func (k *testKind) Run(ctx context.Context, job jobs.Job) error {
	k.mu.Lock()
	if k.runs == nil {
		k.runs = map[string]int{}
	}
	k.runs[job.Runner]++
	k.mu.Unlock()
	if err := job.Publish(ctx, jobs.Status{State: jobs.StateIdle, Runs: job.Previous.Runs + 1}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-job.Requests:
			k.mu.Lock()
			k.requests = append(k.requests, string(r.Data))
			k.mu.Unlock()
		}
	}
}

// registerTestKind registers a testKind on a running server s: it
// validates definitions, and runs nothing before a restart.
func registerTestKind(t *testing.T, s *server.Server) {
	t.Helper()
	if err := s.RegisterJobKind(&testKind{}); err != nil {
		t.Fatal(err)
	}
}

func TestReserved_ClientWrites(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, reservedRules))
	s := c.Server(0)
	registerTestKind(t, s)
	if err := s.RegisterJobKind(&testKind{}); err == nil {
		t.Error("RegisterJobKind(test) twice succeeded")
	}
	const spec = `{"prefix":"/data"}`
	for _, tc := range []struct {
		identity, path, data string
		delete               bool
		want                 codes.Code
		msg                  string // part of the error message
	}{
		// A rule on "/" does not cover the reserved namespace.
		{"root", "/_replds/jobs/test/a", spec, false, codes.PermissionDenied, "may not write"},
		{"root", "/_replds/status/test/a", "{}", false, codes.PermissionDenied, "may not write"},
		{"root", "/_replds/x", "{}", false, codes.PermissionDenied, "may not write"},
		// Status and everything outside jobs is the servers' alone,
		// whatever the rules.
		{"status", "/_replds/status/test/a", "{}", false, codes.PermissionDenied, "written by the servers only"},
		// Jobs are leaves of a registered kind with a valid spec.
		{"jobber", "/_replds/jobs", spec, true, codes.InvalidArgument, "want a leaf /_replds/jobs/KIND/NAME"},
		{"jobber", "/_replds/jobs/test", spec, false, codes.InvalidArgument, "want a leaf /_replds/jobs/KIND/NAME"},
		{"jobber", "/_replds/jobs/test/a/b", spec, false, codes.InvalidArgument, "want a leaf /_replds/jobs/KIND/NAME"},
		{"jobber", "/_replds/jobs/nokind/a", spec, false, codes.InvalidArgument, `unknown job kind "nokind"`},
		{"jobber", "/_replds/jobs/nokind/a", "", true, codes.InvalidArgument, `unknown job kind "nokind"`},
		{"jobber", "/_replds/jobs/test/a", `{"other":1}`, false, codes.InvalidArgument, `missing field "prefix"`},
		{"jobber", "/_replds/jobs/test/a", `{"prefix":"/secret"}`, false, codes.PermissionDenied, "may not read /secret"},
		{"jobber", "/_replds/jobs/test/a", spec, false, codes.OK, ""},
	} {
		name := fmt.Sprintf("%s %s", tc.identity, tc.path)
		w := &repldspb.Write{Path: tc.path, Data: []byte(tc.data), Delete: tc.delete}
		_, err := clientAs(t, c, pki, 0, tc.identity).Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{w}})
		if got := status.Code(err); got != tc.want || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("Store(%s) = %v, want %v with %q", name, err, tc.want, tc.msg)
		}
		if tc.want != codes.OK && tc.path != "/_replds/jobs/test/a" && hasNode(t, s, tc.path) {
			t.Errorf("Store(%s) was refused but stored", name)
		}
	}
	n, err := s.DB().Get("/_replds/jobs/test/a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(n.Data), `{"owner":"jobber","prefix":"/data"}`; got != want {
		t.Errorf("stored spec = %s, want %s (as the validator rewrote it)", got, want)
	}
	// Deleting a job of a registered kind needs only the write rule.
	_, err = clientAs(t, c, pki, 0, "jobber").Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/_replds/jobs/test/a", Delete: true}}})
	if err != nil || hasNode(t, s, "/_replds/jobs/test/a") {
		t.Errorf("delete of a job = %v, still there: %v", err, hasNode(t, s, "/_replds/jobs/test/a"))
	}
}

func TestReserved_StatusWithoutACLs(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	registerTestKind(t, c.Server(0))
	for _, w := range []*repldspb.Write{
		{Path: "/_replds/status/test/a", Data: []byte("{}")},
		{Path: "/_replds/status", Delete: true, Recursive: true},
		{Path: "/_replds", Delete: true, Recursive: true},
		{Path: "/_replds/healthz", Data: []byte("x")},
	} {
		_, err := c.Client(0).Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{w}})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Store(%s) without ACLs = %v, want PermissionDenied", w.Path, err)
		}
	}
	// Without ACLs, any client may define a job of a registered kind.
	put(t, c.Client(0), "/_replds/jobs/test/a", `{"prefix":"/"}`)
}

func TestReserved_ServerWritesStatus(t *testing.T) {
	c := servertest.NewCluster(t, 2)
	w := c.Server(0).Writer()
	nodes, err := w.Write(timeout(t), []store.Write{{Path: "/_replds/status/test/a", Data: []byte(`{"state":"idle"}`)}})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("Writer().Write(status) = %v, %v; want one node", nodes, err)
	}
	// It replicates as any write.
	waitData(t, c, "/_replds/status/test/a", []byte(`{"state":"idle"}`))

	// Apply keeps the node's own version and origin.
	n := store.Node{Path: "/_replds/status/test/b", Meta: store.Meta{Version: nodes[0].Version + 1, Origin: 42, Seq: 1}, Data: []byte("b")}
	if changed, err := w.Apply(timeout(t), []store.Node{n}); err != nil || changed != 1 {
		t.Fatalf("Writer().Apply = %d, %v; want 1", changed, err)
	}
	got, err := c.Server(0).DB().Get(n.Path)
	if err != nil || got.Version != n.Version || got.Origin != 42 {
		t.Errorf("applied node = %+v, %v; want version %d origin 42", got.Meta, err, n.Version)
	}
}

func TestReserved_HiddenFromWatchAndListOfRoot(t *testing.T) {
	pki := servertest.NewPKI(t)
	for _, tc := range []struct {
		name     string
		rules    string
		identity string
	}{
		{"without ACLs", "", servertest.ClientIdentity},
		{"reader of / and /_replds", reservedRules, "jobber"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, tc.rules))
			w := c.Server(0).Writer()
			write := func(path, data string) {
				t.Helper()
				if _, err := w.Write(timeout(t), []store.Write{{Path: path, Data: []byte(data)}}); err != nil {
					t.Fatal(err)
				}
			}
			write("/_replds/status/test/a", "1")
			write("/data/x", "1")
			client := clientAs(t, c, pki, 0, tc.identity)

			root := watch(t, client, "/", nil)
			if got := untilSynced(root); !slices.Equal(got, []string{"/data/x"}) {
				t.Errorf("replay of Watch(/) = %v, want [/data/x]", got)
			}
			status := watch(t, client, nodepath.Status, nil)
			if got := untilSynced(status); !slices.Equal(got, []string{"/_replds/status/test/a"}) {
				t.Errorf("replay of Watch(%s) = %v, want its node", nodepath.Status, got)
			}
			// Live: the status change reaches the status watch only; the
			// root watch sees the next visible change, nothing before it.
			write("/_replds/status/test/a", "2")
			write("/data/y", "1")
			if got := paths(nextNodes(status)); !slices.Equal(got, []string{"/_replds/status/test/a"}) {
				t.Errorf("live Watch(%s) = %v, want its node", nodepath.Status, got)
			}
			if got := paths(nextNodes(root)); !slices.Equal(got, []string{"/data/y"}) {
				t.Errorf("live Watch(/) = %v, want [/data/y]", got)
			}

			for _, tc := range []struct {
				path string
				want []string
			}{
				{"/", []string{"/data/x", "/data/y"}},
				{nodepath.Reserved, []string{"/_replds/status/test/a"}},
			} {
				got, err := list(timeout(t), client, tc.path)
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("List(%s, recursive) = %v, %v; want %v", tc.path, got, err, tc.want)
				}
			}
			dirs, err := client.List(timeout(t), &repldspb.ListRequest{Path: "/"})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := dirs.Recv()
			if err != nil || len(msg.Entries) != 1 || msg.Entries[0].Path != "/data" {
				t.Errorf("List(/) = %v, %v; want only /data", msg, err)
			}
		})
	}
}

// nextNodes returns the next message of a Watch that carries nodes.
func nextNodes(next func() *repldspb.WatchResponse) *repldspb.WatchResponse {
	for {
		if msg := next(); len(msg.Nodes) > 0 {
			return msg
		}
	}
}
