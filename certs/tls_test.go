package certs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replds/replds/certs"
)

// ioTimeout bounds every network operation of these tests: a deadline, not
// a sleep.
const ioTimeout = 10 * time.Second

// writeFiles writes leaf and ca into dir as cert.pem, key.pem (0600) and
// ca.pem.
func writeFiles(t *testing.T, dir string, leaf pair, caPEM []byte) certs.Files {
	t.Helper()
	f := certs.Files{
		Cert: filepath.Join(dir, "cert.pem"),
		Key:  filepath.Join(dir, "key.pem"),
		CA:   filepath.Join(dir, "ca.pem"),
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.Cert, leaf.cert, 0o644},
		{f.Key, leaf.key, 0o600},
		{f.CA, caPEM, 0o644},
	} {
		if err := certs.WriteFile(w.path, w.data, w.mode); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// bumpMtime moves the files' modification time forward, so that a rewrite
// is noticed whatever the file system's timestamp granularity.
func bumpMtime(t *testing.T, paths ...string) {
	t.Helper()
	later := time.Now().Add(time.Hour)
	for _, p := range paths {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
}

// newReloader returns a Reloader logging to the test output that looks at
// its files before every handshake.
func newReloader(t *testing.T, f certs.Files) *certs.Reloader {
	t.Helper()
	r, err := certs.NewReloader(f, testLogger(t))
	if err != nil {
		t.Fatalf("NewReloader(%+v) error: %v", f, err)
	}
	certs.SetCheckInterval(r, 0)
	return r
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// result is what the test server saw of one connection.
type result struct {
	identity string
	ok       bool
	err      error
}

// testServer accepts TLS connections one at a time, reports each handshake
// on results, and answers "ok" to the connections it accepted.
type testServer struct {
	addr    string
	results chan result
}

func startServer(t *testing.T, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), results: make(chan result, 64)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.serve(c.(*tls.Conn))
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *testServer) serve(c *tls.Conn) {
	defer c.Close()
	var r result
	if r.err = c.SetDeadline(time.Now().Add(ioTimeout)); r.err == nil {
		if r.err = c.Handshake(); r.err == nil {
			r.identity, r.ok = certs.Identity(c.ConnectionState())
			_, r.err = c.Write([]byte("ok"))
		}
	}
	s.results <- r
}

// next returns the server's view of the next connection.
func (s *testServer) next(t *testing.T) result {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(ioTimeout):
		t.Fatal("server saw no connection")
		return result{}
	}
}

// dial connects to addr with cfg and reads the server's answer. It returns
// the client's view of the connection, or the error that ended it: in TLS
// 1.3 a server refusing a client certificate is seen on the first read.
func dial(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	if err := tc.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return tls.ConnectionState{}, err
	}
	b, err := io.ReadAll(tc)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	if string(b) != "ok" {
		return tls.ConnectionState{}, errors.New("unexpected answer " + string(b))
	}
	return tc.ConnectionState(), nil
}

// mustDial dials and checks that both ends accepted the connection and
// identified each other; it returns the server certificate the client saw.
func mustDial(t *testing.T, s *testServer, cfg *tls.Config, wantClient string) *x509.Certificate {
	t.Helper()
	st, err := dial(t, s.addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := s.next(t)
	if r.err != nil || !r.ok || r.identity != wantClient {
		t.Fatalf("server saw identity %q, %v, err %v; want %q", r.identity, r.ok, r.err, wantClient)
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want TLS 1.3", st.Version)
	}
	if _, ok := certs.Identity(st); !ok {
		t.Error("client: server identity not verified")
	}
	return st.PeerCertificates[0]
}

// mustRefuse dials and checks that the connection failed on both ends.
func mustRefuse(t *testing.T, s *testServer, cfg *tls.Config) {
	t.Helper()
	_, err := dial(t, s.addr, cfg)
	if err == nil {
		t.Fatal("dial succeeded, want refused")
	}
	r := s.next(t)
	if r.err == nil {
		t.Fatalf("server accepted identity %q, want refused", r.identity)
	}
	t.Logf("client error: %v; server error: %v", err, r.err)
}

// cluster is a CA with a server and a client identity on disk.
type cluster struct {
	ca             pair
	server, client *certs.Reloader
	serverFiles    certs.Files
	clientFiles    certs.Files
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{ca: newCA(t, "ca")}
	c.serverFiles = writeFiles(t, t.TempDir(), issue(t, c.ca, "server-1"), c.ca.cert)
	c.clientFiles = writeFiles(t, t.TempDir(), issue(t, c.ca, "client-1"), c.ca.cert)
	c.server = newReloader(t, c.serverFiles)
	c.client = newReloader(t, c.clientFiles)
	return c
}

func TestTLS_Handshake(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	for _, name := range []string{"", "localhost", "127.0.0.1"} {
		t.Run("serverName="+name, func(t *testing.T) {
			got := mustDial(t, s, c.client.ClientConfig(name), "client-1")
			if got.Subject.CommonName != "server-1" {
				t.Errorf("server certificate CN = %q, want server-1", got.Subject.CommonName)
			}
		})
	}
}

func TestTLS_WrongServerName(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	_, err := dial(t, s.addr, c.client.ClientConfig("other.example.com"))
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("dial with wrong server name: error %v, want x509.HostnameError", err)
	}
	s.next(t)
}

func TestTLS_Refused(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	caPool := x509.NewCertPool()
	caPool.AppendCertsFromPEM(c.ca.cert)

	other := newCA(t, "other")
	foreign := issue(t, other, "client-1") // same CN, wrong CA
	foreignPair, err := tls.X509KeyPair(foreign.cert, foreign.key)
	if err != nil {
		t.Fatal(err)
	}
	foreignFiles := writeFiles(t, t.TempDir(), foreign, other.cert)

	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: caPool}},
		{"certificate from another CA", &tls.Config{
			MinVersion:   tls.VersionTLS13,
			RootCAs:      caPool,
			Certificates: []tls.Certificate{foreignPair},
		}},
		{"client does not trust the server", newReloader(t, foreignFiles).ClientConfig("")},
		{"TLS 1.2", func() *tls.Config {
			cfg := c.client.ClientConfig("")
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return cfg
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustRefuse(t, s, tt.cfg)
		})
	}
	// The server still serves good clients.
	mustDial(t, s, c.client.ClientConfig(""), "client-1")
}

// TestReloader_Rotation rotates the server certificate on disk and checks
// that the next connection gets it, through MaybeReload, without restart.
func TestReloader_Rotation(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	clientCfg := c.client.ClientConfig("")
	first := mustDial(t, s, clientCfg, "client-1")

	next := issue(t, c.ca, "server-2")
	writeFiles(t, filepath.Dir(c.serverFiles.Cert), next, c.ca.cert)
	bumpMtime(t, c.serverFiles.Cert, c.serverFiles.Key)

	got := mustDial(t, s, clientCfg, "client-1")
	if got.Subject.CommonName != "server-2" || got.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("after rotation: server certificate %q serial %v, want server-2 with a new serial (old %v)",
			got.Subject.CommonName, got.SerialNumber, first.SerialNumber)
	}
	if cn := c.server.Leaf().Subject.CommonName; cn != "server-2" {
		t.Errorf("Leaf() CN = %q, want server-2", cn)
	}

	// The client certificate rotates the same way, under the same config.
	writeFiles(t, filepath.Dir(c.clientFiles.Cert), issue(t, c.ca, "client-2"), c.ca.cert)
	bumpMtime(t, c.clientFiles.Cert, c.clientFiles.Key)
	mustDial(t, s, clientCfg, "client-2")
}

// TestReloader_RateLimit checks that MaybeReload does not look at the files
// more than once per interval, and that Reload does.
func TestReloader_RateLimit(t *testing.T) {
	c := newCluster(t)
	certs.SetCheckInterval(c.server, time.Hour)
	s := startServer(t, c.server.ServerConfig())

	writeFiles(t, filepath.Dir(c.serverFiles.Cert), issue(t, c.ca, "server-2"), c.ca.cert)
	bumpMtime(t, c.serverFiles.Cert, c.serverFiles.Key)
	if got := mustDial(t, s, c.client.ClientConfig(""), "client-1"); got.Subject.CommonName != "server-1" {
		t.Errorf("within the check interval: server certificate %q, want server-1", got.Subject.CommonName)
	}
	if err := c.server.Reload(); err != nil {
		t.Fatalf("Reload() error: %v", err)
	}
	if got := mustDial(t, s, c.client.ClientConfig(""), "client-1"); got.Subject.CommonName != "server-2" {
		t.Errorf("after Reload: server certificate %q, want server-2", got.Subject.CommonName)
	}
}

// TestReloader_BadFilesKeepOld writes broken files and checks that the
// previous certificate stays in use, then that a fixed file is picked up.
func TestReloader_BadFilesKeepOld(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	clientCfg := c.client.ClientConfig("")
	other := newCA(t, "other")
	next := issue(t, c.ca, "server-2")

	tests := []struct {
		name     string
		path     string
		data     []byte
		contains string
	}{
		{"garbage key", c.serverFiles.Key, []byte("junk"), "load"},
		{"key of another certificate", c.serverFiles.Key, issue(t, c.ca, "x").key, "private key does not match"},
		{"empty CA", c.serverFiles.CA, nil, "no PEM certificate"},
		{"CA that did not sign the certificate", c.serverFiles.CA, other.cert, "is not valid under"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig, err := os.ReadFile(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := certs.WriteFile(tt.path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			bumpMtime(t, tt.path)
			// MaybeReload (on the handshake) fails and keeps the old one.
			if got := mustDial(t, s, clientCfg, "client-1"); got.Subject.CommonName != "server-1" {
				t.Errorf("server certificate %q, want server-1 kept", got.Subject.CommonName)
			}
			err = c.server.Reload()
			if err == nil || !strings.HasPrefix(err.Error(), "certs: ") || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Reload() error = %v, want a certs: error containing %q", err, tt.contains)
			}
			if got := mustDial(t, s, clientCfg, "client-1"); got.Subject.CommonName != "server-1" {
				t.Errorf("after failed Reload: server certificate %q, want server-1 kept", got.Subject.CommonName)
			}
			if err := certs.WriteFile(tt.path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.server.Reload(); err != nil {
				t.Fatalf("Reload() of restored files error: %v", err)
			}
		})
	}

	// A half-done rotation (new certificate, old key) is refused, then
	// completed by the key's arrival, which MaybeReload notices.
	dir := filepath.Dir(c.serverFiles.Cert)
	if err := certs.WriteFile(c.serverFiles.Cert, next.cert, 0o644); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, c.serverFiles.Cert)
	if got := mustDial(t, s, clientCfg, "client-1"); got.Subject.CommonName != "server-1" {
		t.Errorf("half-rotated: server certificate %q, want server-1 kept", got.Subject.CommonName)
	}
	writeFiles(t, dir, next, c.ca.cert)
	bumpMtime(t, c.serverFiles.Key)
	if got := mustDial(t, s, clientCfg, "client-1"); got.Subject.CommonName != "server-2" {
		t.Errorf("rotation completed: server certificate %q, want server-2", got.Subject.CommonName)
	}
}

// TestReloader_CARotation adds a second CA to the server's CA file and
// checks that clients of that CA are accepted from the next connection.
func TestReloader_CARotation(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	ca2 := newCA(t, "ca-2")
	// A client of the new CA that trusts the server's (old) CA.
	newClient := writeFiles(t, t.TempDir(), issue(t, ca2, "client-ca2"), bundle(ca2.cert, c.ca.cert))
	cfg := newReloader(t, newClient).ClientConfig("")

	mustRefuse(t, s, cfg)

	writeFiles(t, filepath.Dir(c.serverFiles.Cert), issue(t, c.ca, "server-1"), bundle(c.ca.cert, ca2.cert))
	bumpMtime(t, c.serverFiles.CA)
	mustDial(t, s, cfg, "client-ca2")
	// Clients of the old CA still get in.
	mustDial(t, s, c.client.ClientConfig(""), "client-1")
}

// bundle concatenates two PEM bundles.
func bundle(a, b []byte) []byte {
	return bytes.Join([][]byte{a, b}, nil)
}

func TestNewReloader_Errors(t *testing.T) {
	ca := newCA(t, "ca")
	other := newCA(t, "other")
	good := issue(t, ca, "x")
	dir := t.TempDir()
	goodFiles := writeFiles(t, dir, good, ca.cert)
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := certs.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		f        certs.Files
		contains string
		is       error
	}{
		{"nothing", certs.Files{}, "certs: --tls-cert, --tls-key and --tls-ca are required", nil},
		{"partial", certs.Files{Cert: goodFiles.Cert}, "certs: --tls-key and --tls-ca are required with --tls-cert", nil},
		{"missing cert", certs.Files{Cert: missing, Key: goodFiles.Key, CA: goodFiles.CA}, "missing.pem", os.ErrNotExist},
		{"missing CA", certs.Files{Cert: goodFiles.Cert, Key: goodFiles.Key, CA: missing}, "missing.pem", os.ErrNotExist},
		{"key mismatch", certs.Files{Cert: goodFiles.Cert, Key: write("k2", issue(t, ca, "y").key), CA: goodFiles.CA}, "private key does not match", nil},
		{"CA without certificates", certs.Files{Cert: goodFiles.Cert, Key: goodFiles.Key, CA: write("ca2", []byte("junk"))}, "no PEM certificate", nil},
		{"certificate from another CA", certs.Files{Cert: goodFiles.Cert, Key: goodFiles.Key, CA: write("ca3", other.cert)}, "is not valid under", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := certs.NewReloader(tt.f, testLogger(t))
			if err == nil {
				t.Fatalf("NewReloader(%+v) = %v, want error", tt.f, r)
			}
			if !strings.HasPrefix(err.Error(), "certs: ") || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("NewReloader(%+v) error = %v, want a certs: error containing %q", tt.f, err, tt.contains)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("NewReloader(%+v) error = %v, want wrapping %v", tt.f, err, tt.is)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	named := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}}
	unnamed := &x509.Certificate{}
	tests := []struct {
		name   string
		state  tls.ConnectionState
		want   string
		wantOK bool
	}{
		{"no certificate", tls.ConnectionState{}, "", false},
		{"unverified certificate", tls.ConnectionState{PeerCertificates: []*x509.Certificate{named}}, "", false},
		{"empty chain", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}, "", false},
		{"empty CN", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{unnamed}}}, "", false},
		{"verified", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{named, unnamed}}}, "alice", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := certs.Identity(tt.state)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Identity() = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestReloader_Concurrent handshakes while the certificate rotates; the
// race detector checks the swaps.
func TestReloader_Concurrent(t *testing.T) {
	c := newCluster(t)
	cfg := c.server.ServerConfig()
	clientCfg := c.client.ClientConfig("")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				tc := conn.(*tls.Conn)
				if err := tc.SetDeadline(time.Now().Add(ioTimeout)); err == nil && tc.Handshake() == nil {
					tc.Write([]byte("ok"))
				}
			})
		}
	})
	var rotations []pair
	for range 5 {
		rotations = append(rotations, issue(t, c.ca, "server-rot"))
	}
	wg.Go(func() {
		// Certificate and key are replaced one after the other: handshakes
		// in between see a mismatched pair, which is refused (and logged),
		// keeping the previous credentials.
		for _, p := range rotations {
			if err := certs.WriteFile(c.serverFiles.Cert, p.cert, 0o644); err != nil {
				t.Error(err)
			}
			if err := certs.WriteFile(c.serverFiles.Key, p.key, 0o600); err != nil {
				t.Error(err)
			}
		}
	})
	var clients sync.WaitGroup
	for range 4 {
		clients.Go(func() {
			for range 5 {
				if _, err := dial(t, ln.Addr().String(), clientCfg); err != nil {
					t.Errorf("dial during rotation: %v", err)
				}
			}
		})
	}
	clients.Wait()
}

// signedBy returns a client certificate (clientAuth only) with subject sub
// and DNS names dns signed by ca.
func signedBy(t *testing.T, ca pair, sub pkix.Name, dns ...string) tls.Certificate {
	t.Helper()
	caPair, err := tls.X509KeyPair(ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	caCert := parseCert(t, ca.cert)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      sub,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caPair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A certificate with two Common Names (Go would read the last as the
// identity) is refused in the handshake.
func TestTLS_ManyCommonNamesRefused(t *testing.T) {
	c := newCluster(t)
	s := startServer(t, c.server.ServerConfig())
	two := signedBy(t, c.ca, pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "host1"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "admin"},
	}})
	cfg := c.client.ClientConfig("")
	cfg.GetClientCertificate = nil
	cfg.Certificates = []tls.Certificate{two}
	if _, err := dial(t, s.addr, cfg); err == nil {
		t.Fatal("a certificate with CN=host1 and CN=admin was accepted")
	}
	if r := s.next(t); !errors.Is(r.err, certs.ErrManyCommonNames) {
		t.Errorf("server error = %v, want ErrManyCommonNames", r.err)
	}
	// One Common Name is fine.
	cfg.Certificates = []tls.Certificate{signedBy(t, c.ca, pkix.Name{CommonName: "host1"})}
	mustDial(t, s, cfg, "host1")
}

// A client certificate (IssueClient) authenticates a client but cannot
// serve: the client requires serverAuth of the server.
func TestTLS_ClientCertificateCannotServe(t *testing.T) {
	c := newCluster(t)
	cert, key, err := certs.IssueClient(c.ca.cert, c.ca.key, "host1", 30)
	if err != nil {
		t.Fatal(err)
	}
	hostFiles := writeFiles(t, t.TempDir(), pair{cert, key}, c.ca.cert)
	host := newReloader(t, hostFiles)
	if u := host.Leaf().ExtKeyUsage; len(u) != 1 || u[0] != x509.ExtKeyUsageClientAuth || len(host.Leaf().IPAddresses)+len(host.Leaf().DNSNames) != 0 {
		t.Errorf("IssueClient: usages %v, SANs %v %v; want clientAuth only, none", u, host.Leaf().DNSNames, host.Leaf().IPAddresses)
	}
	// As a client, it works.
	mustDial(t, startServer(t, c.server.ServerConfig()), host.ClientConfig(""), "host1")
	// As a server, clients refuse it: it names no host.
	fake := startServer(t, host.ServerConfig())
	if _, err := dial(t, fake.addr, c.client.ClientConfig("")); err == nil {
		t.Errorf("client accepted a server presenting a client certificate")
	}
	fake.next(t)
	// Nor would they with a host name in it: it lacks serverAuth.
	named := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{signedBy(t, c.ca, pkix.Name{CommonName: "host2"}, "localhost")}}
	fake = startServer(t, named)
	_, err = dial(t, fake.addr, c.client.ClientConfig("localhost"))
	var usage x509.CertificateInvalidError
	if !errors.As(err, &usage) || usage.Reason != x509.IncompatibleUsage {
		t.Errorf("client dialing a server whose certificate has clientAuth only: err = %v, want incompatible usage", err)
	}
	fake.next(t)
}
