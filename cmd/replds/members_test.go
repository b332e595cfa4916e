package main

import (
	"errors"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// A server that died leaves the cluster "not converged" until it is
// reaped; members forget ends that at once, and refuses a live member.
func TestE2E_MembersForget(t *testing.T) {
	servers := startCluster(t, 3)
	waitStatus(t, servers[0].addr, "convergence", converged)
	servers[2].kill(syscall.SIGKILL)
	waitStatus(t, servers[0].addr, "s2 reported dead", func(out string, code int) error {
		if err := notConvergedNaming("s2")(out, code); err != nil {
			return err
		}
		if !regexp.MustCompile(`(?m)^s2\s+\S+\s+dead\s`).MatchString(out) {
			return errNotDead
		}
		return nil
	})
	_, errOut, code := run(t, nil, "members", "forget", "s1", "--server="+servers[0].addr)
	if code == 0 || !strings.Contains(errOut, "alive") {
		t.Errorf("members forget of a live member: exit %d, %q; want a refusal saying it is alive", code, errOut)
	}
	out := mustRun(t, "members", "forget", "s2", "--server="+servers[0].addr)
	if !strings.Contains(out, "forgot s2 on 2 members") {
		t.Errorf("members forget s2: %q, want forgot s2 on 2 members", out)
	}
	waitStatus(t, servers[1].addr, "convergence without s2", converged)
}

var errNotDead = errors.New("s2 not shown as dead")
