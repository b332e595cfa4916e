package targettest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replds/replds/backup/target"
)

// VersityGW is the name of the S3 server binary the S3 tests run
// (github.com/versity/versitygw, installed by .ci/run with go install).
const VersityGW = "versitygw"

var bucketSeq atomic.Int64

// S3URL starts a versitygw S3 server on loopback for the test, with its
// own directory and credentials set in the test's environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; so the test must
// not be parallel), creates a bucket, and returns an s3:// URL of a
// prefix in it. The test is skipped, with a message saying how to install
// the server, when the binary is not found on PATH or in $GOPATH/bin.
func S3URL(t *testing.T) string {
	t.Helper()
	bin := findVersityGW()
	if bin == "" {
		t.Skipf("%s not found on PATH or in $GOPATH/bin; install it with: CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", VersityGW)
	}
	const access, secret = "replds-test", "replds-test-secret-key"
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+access, "ROOT_SECRET_KEY="+secret)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	bucket := fmt.Sprintf("replds-%d", bucketSeq.Add(1))
	url := fmt.Sprintf("s3://%s/backups?endpoint=http://%s&region=us-east-1", bucket, addr)
	tg, err := target.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	if err := tg.(*target.S3).CreateBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return url
}

func findVersityGW() string {
	if p, err := exec.LookPath(VersityGW); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", VersityGW)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
