package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	repldspb "replds/proto"
	"replds/server"
	"replds/server/servertest"
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
