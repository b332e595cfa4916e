package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
)

// TestImport: nodes keep their versions, replace only what is older or
// missing, and reach the other servers; a writer without write on a path,
// the reserved namespace, a version beyond the clock limit and a node
// without origin are refused, and a refused batch changes nothing.
func TestImport(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 2, servertest.WithTLS(pki, peersACL+`
restorer /r write
restorer /r read
restorer /_replds write
reader   /r read
`))
	cl := clientAs(t, c, pki, 0, "restorer")
	now := uint64(time.Now().UnixMilli()) << 16
	node := func(path, data string, version, origin, seq uint64) *repldspb.Node {
		return &repldspb.Node{Path: path, Data: []byte(data), Version: version, Origin: origin, Seq: seq}
	}
	// A newer live node that an import must not overwrite.
	if _, err := cl.Store(timeout(t), &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/r/newer", Data: []byte("live")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Import(timeout(t), &repldspb.ImportRequest{Nodes: []*repldspb.Node{
		node("/r/a", "old a", now-1000, 77, 1),
		node("/r/newer", "old", now-2000, 77, 2),
		{Path: "/r/gone", Deleted: true, Version: now - 500, Origin: 77, Seq: 3},
	}})
	if err != nil || resp.Changed != 2 {
		t.Fatalf("Import = %v, %v; want 2 changed (a and the tombstone)", resp, err)
	}
	waitData(t, c, "/r/a", []byte("old a"))
	for i := range c.N() {
		n, err := c.Server(i).DB().Get("/r/a")
		if err != nil || n.Version != now-1000 || n.Origin != 77 {
			t.Errorf("server %d: /r/a = %+v, %v; want the imported version and origin", i, n.Meta, err)
		}
		if n, err := c.Server(i).DB().Get("/r/newer"); err != nil || string(n.Data) != "live" {
			t.Errorf("server %d: /r/newer = %q, %v; an older import overwrote it", i, n.Data, err)
		}
	}
	for _, tc := range []struct {
		name     string
		identity string
		nodes    []*repldspb.Node
		want     codes.Code
	}{
		{"no write rule", "reader", []*repldspb.Node{node("/r/x", "x", now, 77, 9)}, codes.PermissionDenied},
		{"reserved", "restorer", []*repldspb.Node{node("/r/y", "y", now, 77, 9), node("/_replds/jobs/backup/x", "{}", now, 77, 10)}, codes.PermissionDenied},
		{"ahead of the clock", "restorer", []*repldspb.Node{node("/r/y", "y", now, 77, 9), node("/r/z", "z", now+uint64(10*time.Minute.Milliseconds())<<16, 77, 10)}, codes.InvalidArgument},
		{"no origin", "restorer", []*repldspb.Node{node("/r/y", "y", now, 0, 9)}, codes.InvalidArgument},
		{"bad path", "restorer", []*repldspb.Node{node("/r/../y", "y", now, 77, 9)}, codes.InvalidArgument},
	} {
		_, err := clientAs(t, c, pki, 1, tc.identity).Import(timeout(t), &repldspb.ImportRequest{Nodes: tc.nodes})
		if status.Code(err) != tc.want {
			t.Errorf("Import(%s) = %v, want %v", tc.name, err, tc.want)
		}
		if hasNode(t, c.Server(1), "/r/y") || hasNode(t, c.Server(1), "/r/x") {
			t.Errorf("Import(%s) was refused but wrote", tc.name)
		}
	}
}
