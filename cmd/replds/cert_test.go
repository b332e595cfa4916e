package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestE2E_CertIssueKinds checks that a certificate issued without --host
// or --server is a client one (clientAuth only, no SANs), and that servers
// get both usages.
func TestE2E_CertIssueKinds(t *testing.T) {
	dir := t.TempDir()
	in := func(name string) string { return filepath.Join(dir, name) }
	mustRun(t, "cert", "ca", "--cert="+in("ca.crt"), "--key="+in("ca.key"))
	ca := []string{"--ca=" + in("ca.crt"), "--ca-key=" + in("ca.key")}
	tests := []struct {
		cn    string
		args  []string
		usage []x509.ExtKeyUsage
		sans  bool
	}{
		{"host1", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
		{"host2", []string{"--client"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
		{"server1", []string{"--host=db1.example.net"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true},
		{"server2", []string{"--server"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true},
	}
	for _, tt := range tests {
		t.Run(tt.cn, func(t *testing.T) {
			args := append([]string{"cert", "issue", "--cn=" + tt.cn, "--cert=" + in(tt.cn+".crt"), "--key=" + in(tt.cn+".key")}, ca...)
			mustRun(t, append(args, tt.args...)...)
			b, err := os.ReadFile(in(tt.cn + ".crt"))
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(b)
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.ExtKeyUsage, tt.usage) {
				t.Errorf("usages %v, want %v", c.ExtKeyUsage, tt.usage)
			}
			if has := len(c.DNSNames)+len(c.IPAddresses) > 0; has != tt.sans {
				t.Errorf("SANs %v %v, want some: %v", c.DNSNames, c.IPAddresses, tt.sans)
			}
		})
	}
	_, errOut, code := run(t, nil, append([]string{"cert", "issue", "--cn=bad", "--client", "--host=x.example.net", "--cert=" + in("bad.crt"), "--key=" + in("bad.key")}, ca...)...)
	if code == 0 || !strings.Contains(errOut, "--client takes neither --server nor --host") {
		t.Errorf("cert issue --client --host: exit %d, %q; want a refusal naming the flags", code, errOut)
	}
}
