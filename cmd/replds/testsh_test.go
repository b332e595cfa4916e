package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/replds/replds/server/servertest"
)

// freePortPairs returns n ports, each free on 127.0.0.1 with the port
// after it (test.sh's servers take port+1 for membership, TCP and UDP).
// Another process may take one before the test does: that fails the test
// with a clear message, it does not hang it.
func freePortPairs(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err == nil {
			var u net.PacketConn
			if u, err = net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
				u.Close()
				ports = append(ports, p)
			}
			next.Close()
		}
		l.Close()
	}
	return ports
}

// TestTestSh_RunsUntilSignal runs ./test.sh with stdin at its end, as under
// nohup: the cluster stays up and converges, and a SIGTERM stops it all.
func TestTestSh_RunsUntilSignal(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	ports := freePortPairs(t, 3)
	cmd := exec.Command("bash", "../../test.sh")
	cmd.Env = append(cleanEnv(), fmt.Sprintf("TEST_SH_PORTS=%d %d %d", ports[0], ports[1], ports[2]),
		"TEST_SH_DIR="+t.TempDir(), "TEST_SH_BIN="+binary)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // to clean up every server if the test fails
	p := startCmd(t, "test.sh", cmd)
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	p.waitLine(regexp.MustCompile(`stdin is not a terminal: running until SIGINT or SIGTERM`))
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	waitStatus(t, addr, "the test.sh cluster to converge", converged)
	select {
	case <-p.done:
		t.Fatalf("test.sh exited with stdin at its end: %v", p.err)
	default:
	}
	p.kill(syscall.SIGTERM)
	if p.err != nil {
		t.Errorf("test.sh after SIGTERM: %v, want exit 0", p.err)
	}
	err := servertest.Eventually(context.Background(), 20*time.Second, func() error {
		for _, port := range ports {
			if _, _, code := run(t, nil, "cat", fmt.Sprintf("--server=127.0.0.1:%d", port), "/x"); code != exitUnavailable {
				return fmt.Errorf("server on %d still answers (exit %d)", port, code)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
