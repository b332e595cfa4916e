package certs_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replds/replds/certs"
)

// pair is a PEM certificate and its PEM key.
type pair struct {
	cert, key []byte
}

// newCA makes a CA valid for a year.
func newCA(t *testing.T, cn string) pair {
	t.Helper()
	c, k, err := certs.NewCA(cn, 365)
	if err != nil {
		t.Fatalf("NewCA(%q) error: %v", cn, err)
	}
	return pair{c, k}
}

// issue makes a certificate signed by ca, valid for 30 days.
func issue(t *testing.T, ca pair, cn string, hosts ...string) pair {
	t.Helper()
	c, k, err := certs.Issue(ca.cert, ca.key, cn, hosts, 30)
	if err != nil {
		t.Fatalf("Issue(%q, %q) error: %v", cn, hosts, err)
	}
	return pair{c, k}
}

// parseCert parses the first certificate of a PEM block.
func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE block in %q", certPEM)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkKey checks that keyPEM is a PKCS #8 ECDSA key for cert.
func checkKey(t *testing.T, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM type = %v, want PRIVATE KEY", b)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("parse key: %v", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("key type %T, want *ecdsa.PrivateKey", k)
	}
	if !ek.PublicKey.Equal(cert.PublicKey) {
		t.Error("key does not match certificate")
	}
}

func TestNewCA(t *testing.T) {
	before := time.Now()
	ca := newCA(t, "replds test CA")
	c := parseCert(t, ca.cert)
	checkKey(t, ca.key, c)
	if c.Subject.CommonName != "replds test CA" {
		t.Errorf("CN = %q, want %q", c.Subject.CommonName, "replds test CA")
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want true, true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v; want 0, true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, want)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want positive, at most 128 bits", c.SerialNumber)
	}
	if !c.NotBefore.Before(before) {
		t.Errorf("NotBefore = %v, want before %v", c.NotBefore, before)
	}
	if want := before.AddDate(0, 0, 365); c.NotAfter.Before(want.Add(-time.Minute)) || c.NotAfter.After(want.Add(time.Minute)) {
		t.Errorf("NotAfter = %v, want about %v", c.NotAfter, want)
	}
}

func TestNewCA_Errors(t *testing.T) {
	tests := []struct {
		name string
		cn   string
		days int
	}{
		{"empty cn", "", 1},
		{"zero days", "ca", 0},
		{"negative days", "ca", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := certs.NewCA(tt.cn, tt.days); err == nil || !strings.HasPrefix(err.Error(), "certs: ") {
				t.Errorf("NewCA(%q, %d) error = %v, want a certs: error", tt.cn, tt.days, err)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t, "ca")
	caCert := parseCert(t, ca.cert)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	tests := []struct {
		name      string
		hosts     []string
		wantDNS   []string
		wantIPs   []string
		verifyDNS string
	}{
		{
			name:      "default hosts",
			wantDNS:   []string{"localhost"},
			wantIPs:   []string{"127.0.0.1", "::1"},
			verifyDNS: "localhost",
		},
		{
			name:      "given hosts",
			hosts:     []string{"db1.example.com", "10.0.0.1", "2001:db8::1", "*.svc.cluster.local", "node_2"},
			wantDNS:   []string{"db1.example.com", "*.svc.cluster.local", "node_2"},
			wantIPs:   []string{"10.0.0.1", "2001:db8::1"},
			verifyDNS: "x.svc.cluster.local",
		},
		{
			name:      "IP only",
			hosts:     []string{"192.0.2.7"},
			wantIPs:   []string{"192.0.2.7"},
			verifyDNS: "192.0.2.7",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := issue(t, ca, "host1", tt.hosts...)
			c := parseCert(t, p.cert)
			checkKey(t, p.key, c)
			if c.Subject.CommonName != "host1" {
				t.Errorf("CN = %q, want host1", c.Subject.CommonName)
			}
			if !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", c.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", ips, tt.wantIPs)
			}
			if c.IsCA {
				t.Error("IsCA = true, want false")
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want DigitalSignature", c.KeyUsage)
			}
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
			if !slices.Equal(c.ExtKeyUsage, wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", c.ExtKeyUsage, wantEKU)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v: want positive, at most 128 bits", c.SerialNumber)
			}
			for _, usage := range wantEKU {
				if _, err := c.Verify(x509.VerifyOptions{
					Roots:     roots,
					DNSName:   tt.verifyDNS,
					KeyUsages: []x509.ExtKeyUsage{usage},
				}); err != nil {
					t.Errorf("Verify(%q, %v) error: %v", tt.verifyDNS, usage, err)
				}
			}
		})
	}
}

func TestIssue_SerialsDiffer(t *testing.T) {
	ca := newCA(t, "ca")
	a := parseCert(t, issue(t, ca, "x").cert)
	b := parseCert(t, issue(t, ca, "x").cert)
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Errorf("two certificates with serial %v", a.SerialNumber)
	}
}

func TestIssue_CappedByCA(t *testing.T) {
	c, k, err := certs.NewCA("short", 1)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, err := certs.Issue(c, k, "x", nil, 365)
	if err != nil {
		t.Fatal(err)
	}
	ca, leaf := parseCert(t, c), parseCert(t, leafPEM)
	if leaf.NotAfter.After(ca.NotAfter) {
		t.Errorf("leaf NotAfter %v after CA NotAfter %v", leaf.NotAfter, ca.NotAfter)
	}
}

func TestIssue_Errors(t *testing.T) {
	ca := newCA(t, "ca")
	other := newCA(t, "other")
	leaf := issue(t, ca, "leaf")
	tests := []struct {
		name     string
		caCert   []byte
		caKey    []byte
		cn       string
		hosts    []string
		days     int
		contains string
	}{
		{"empty cn", ca.cert, ca.key, "", nil, 1, "empty common name"},
		{"zero days", ca.cert, ca.key, "x", nil, 0, "validity 0 days"},
		{"garbage CA", []byte("junk"), ca.key, "x", nil, 1, "parse CA"},
		{"mismatched CA key", ca.cert, other.key, "x", nil, 1, "parse CA"},
		{"leaf as CA", leaf.cert, leaf.key, "x", nil, 1, `"leaf" is not a CA certificate`},
		{"host with port", ca.cert, ca.key, "x", []string{"localhost:80"}, 1, `invalid host "localhost:80"`},
		{"host with space", ca.cert, ca.key, "x", []string{"a b"}, 1, `invalid host "a b"`},
		{"empty host", ca.cert, ca.key, "x", []string{""}, 1, `invalid host ""`},
		{"inner wildcard", ca.cert, ca.key, "x", []string{"a.*.b"}, 1, `invalid host "a.*.b"`},
		{"empty label", ca.cert, ca.key, "x", []string{"a..b"}, 1, `invalid host "a..b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := certs.Issue(tt.caCert, tt.caKey, tt.cn, tt.hosts, tt.days)
			if err == nil || !strings.HasPrefix(err.Error(), "certs: ") || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Issue() error = %v, want a certs: error containing %q", err, tt.contains)
			}
		})
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		mode os.FileMode
		data string
	}{
		{"key.pem", 0o600, "secret"},
		{"cert.pem", 0o644, "public"},
		// Replacing a file takes the new mode and content.
		{"cert.pem", 0o600, "replaced"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name)
		if err := certs.WriteFile(p, []byte(tt.data), tt.mode); err != nil {
			t.Fatalf("WriteFile(%q) error: %v", p, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != tt.data {
			t.Errorf("ReadFile(%q) = %q, %v; want %q", p, got, err, tt.data)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tt.mode {
			t.Errorf("mode of %q = %v, want %v", p, fi.Mode().Perm(), tt.mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"cert.pem", "key.pem"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q (no temp files)", names, want)
	}
}

func TestWriteFile_Errors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "key.pem")
	err := certs.WriteFile(p, []byte("x"), 0o600)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "certs: ") {
		t.Errorf("WriteFile(%q) error = %v, want a certs: error wrapping os.ErrNotExist", p, err)
	}
}

func TestFiles_Validate(t *testing.T) {
	tests := []struct {
		name    string
		f       certs.Files
		enabled bool
		wantErr string
	}{
		{"none", certs.Files{}, false, ""},
		{"all", certs.Files{Cert: "c", Key: "k", CA: "a"}, true, ""},
		{"cert only", certs.Files{Cert: "c"}, false, "certs: --tls-key and --tls-ca are required with --tls-cert"},
		{"key only", certs.Files{Key: "k"}, false, "certs: --tls-cert and --tls-ca are required with --tls-key"},
		{"ca only", certs.Files{CA: "a"}, false, "certs: --tls-cert and --tls-key are required with --tls-ca"},
		{"no key", certs.Files{Cert: "c", CA: "a"}, false, "certs: --tls-key is required with --tls-cert and --tls-ca"},
		{"no ca", certs.Files{Cert: "c", Key: "k"}, false, "certs: --tls-ca is required with --tls-cert and --tls-key"},
		{"no cert", certs.Files{Key: "k", CA: "a"}, false, "certs: --tls-cert is required with --tls-key and --tls-ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Enabled(); got != tt.enabled {
				t.Errorf("%+v.Enabled() = %v, want %v", tt.f, got, tt.enabled)
			}
			err := tt.f.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("%+v.Validate() = %v, want nil", tt.f, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%+v.Validate() = %v, want %q", tt.f, err, tt.wantErr)
			}
		})
	}
}
