package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server"
	"github.com/replds/replds/server/servertest"
)

// A server whose peer cannot be joined says why, in /readyz and Status.
func TestServer_JoinErrorShown(t *testing.T) {
	const peer = "nosuch.invalid:12100"
	c := servertest.NewCluster(t, 1, withHTTP, func(i int, cfg *server.Config) { cfg.Peers = []string{peer} })
	var last string
	c.Wait(10*time.Second, "a join error in Status", func() error {
		resp, err := c.Client(0).Status(timeout(t), &repldspb.StatusRequest{})
		if err != nil {
			return err
		}
		if last = resp.LastJoinError; !strings.HasPrefix(last, peer+": ") {
			return fmt.Errorf("LastJoinError = %q", last)
		}
		return nil
	})
	code, body, err := httpGet(http.DefaultClient, "http://"+c.Server(0).HTTPAddr()+"/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "last join error: "+peer) {
		t.Errorf("/readyz = %d %q %v, want 503 with the last join error", code, body, err)
	}
	t.Logf("Status.LastJoinError = %q", last)
}

// Forgetting members takes write permission on /_replds/members.
func TestServer_ForgetMemberAuthorized(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, peersACL))
	_, err := c.Client(0).ForgetMember(timeout(t), &repldspb.ForgetMemberRequest{Name: "gone"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("ForgetMember without a rule: %v, want PermissionDenied", err)
	}
	if err := c.SetACL(peersACL + "client /_replds/members write\n"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Client(0).ForgetMember(timeout(t), &repldspb.ForgetMemberRequest{Name: "gone"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ForgetMember of an unknown member: %v, want NotFound", err)
	}
	_, err = c.Client(0).ForgetMember(timeout(t), &repldspb.ForgetMemberRequest{Name: c.Server(0).Name()})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ForgetMember of itself (alive): %v, want FailedPrecondition", err)
	}
}
