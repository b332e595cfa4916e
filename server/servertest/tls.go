package servertest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/replds/replds/certs"
	"github.com/replds/replds/server"
)

// ClientIdentity is the identity (certificate Common Name) that
// Cluster.Client and Cluster.DialOptions present in a TLS cluster. ACL
// texts given to WithTLS name it to let those clients in.
const ClientIdentity = "client"

// ServerIdentity returns the identity WithTLS gives server i: "server0",
// "server1", ...
func ServerIdentity(i int) string { return fmt.Sprintf("server%d", i) }

// testHosts are the names every test certificate is valid for: clusters
// listen on 127.0.0.1.
var testHosts = []string{"127.0.0.1", "localhost"}

// PKI is a test certificate authority, made in the test, with its files
// (CA certificate, issued certificates and keys, a gossip key, ACL files)
// in a temporary directory of the test that created it. Its methods are
// safe for concurrent use.
type PKI struct {
	dir           string
	caFile        string
	gossipKeyFile string
	caCert, caKey []byte
	pool          *x509.CertPool

	mu sync.Mutex
	n  int // numbers the files written, so that none is overwritten
}

// pkis maps the CA file of every live PKI to it, so that a cluster whose
// servers use that CA can issue its client certificate (Cluster.Client).
var pkis sync.Map // string -> *PKI

// NewPKI creates a CA valid for a day and a gossip key, and writes them in
// a temporary directory of t.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	caCert, caKey, err := certs.NewCA("replds test CA", 1)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caCert) {
		t.Fatal("servertest: the new CA certificate does not parse")
	}
	p := &PKI{dir: t.TempDir(), caCert: caCert, caKey: caKey, pool: pool}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	writeFile(t, p.caFile, caCert, 0o644)
	p.gossipKeyFile = NewGossipKey(t)
	pkis.Store(p.caFile, p)
	t.Cleanup(func() { pkis.Delete(p.caFile) })
	return p
}

// NewGossipKey writes a fresh random memberlist key (as replds cert
// gossip-key does) in a temporary directory of t and returns its path.
func NewGossipKey(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	writeFile(t, path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	return path
}

// CAFile returns the path of the CA certificate (PEM).
func (p *PKI) CAFile() string { return p.caFile }

// GossipKeyFile returns the path of the PKI's gossip key, which WithTLS
// gives every server.
func (p *PKI) GossipKeyFile() string { return p.gossipKeyFile }

// Issue returns a new certificate and key (PEM) for identity cn, valid for
// 127.0.0.1 and localhost. Every call makes a new key and serial number.
func (p *PKI) Issue(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := p.issue(cn)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func (p *PKI) issue(cn string) (certPEM, keyPEM []byte, err error) {
	return certs.Issue(p.caCert, p.caKey, cn, testHosts, 1)
}

// Files issues a new certificate for identity cn (see Issue), writes it and
// its key to new files and returns them with the CA file, ready for
// server.Config.TLS.
func (p *PKI) Files(t testing.TB, cn string) certs.Files {
	t.Helper()
	f, err := p.files(cn)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (p *PKI) files(cn string) (certs.Files, error) {
	certPEM, keyPEM, err := p.issue(cn)
	if err != nil {
		return certs.Files{}, err
	}
	base := p.newName(cn)
	f := certs.Files{Cert: base + ".crt", Key: base + ".key", CA: p.caFile}
	if err := certs.WriteFile(f.Key, keyPEM, 0o600); err != nil {
		return certs.Files{}, err
	}
	if err := certs.WriteFile(f.Cert, certPEM, 0o644); err != nil {
		return certs.Files{}, err
	}
	return f, nil
}

// Rotate issues a new certificate for identity cn and atomically replaces
// the certificate and key files of f with it (key first), as an operator
// rotating a certificate would. It returns the new certificate.
func (p *PKI) Rotate(t testing.TB, f certs.Files, cn string) *x509.Certificate {
	t.Helper()
	certPEM, keyPEM := p.Issue(t, cn)
	writeFile(t, f.Key, keyPEM, 0o600)
	writeFile(t, f.Cert, certPEM, 0o644)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

// TLSConfig returns a client TLS configuration presenting a new
// certificate for identity cn and trusting only the PKI's CA.
func (p *PKI) TLSConfig(t testing.TB, cn string) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(p.Issue(t, cn))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      p.pool,
	}
}

// DialOptions returns the options of a gRPC client authenticating as
// identity cn (see TLSConfig).
func (p *PKI) DialOptions(t testing.TB, cn string) []grpc.DialOption {
	t.Helper()
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(p.TLSConfig(t, cn)))}
}

// WriteACL writes text to a new ACL file and returns its path.
func (p *PKI) WriteACL(t testing.TB, text string) string {
	t.Helper()
	path, err := p.writeACL(text)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *PKI) writeACL(text string) (string, error) {
	path := p.newName("acl")
	return path, certs.WriteFile(path, []byte(text), 0o644)
}

func (p *PKI) newName(base string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return filepath.Join(p.dir, fmt.Sprintf("%s-%d", base, p.n))
}

// WithTLS runs the servers in TLS mode with certificates of p: server i
// has identity ServerIdentity(i) and the PKI's gossip key. A non-empty
// aclText is written to an ACL file that every server of the cluster
// shares (Cluster.Config(i).ACLFile, Cluster.SetACL); with an empty one the
// servers have no ACLs (everything allowed to any certificate of the CA).
//
// Clients of such a cluster (Cluster.Client, Cluster.DialOptions)
// authenticate as ClientIdentity, so a restrictive aclText must grant
// "client" what the test needs of them.
func WithTLS(p *PKI, aclText string) Option {
	return WithTLSIdentities(p, aclText, ServerIdentity)
}

// WithTLSIdentities is WithTLS with server i's identity given by
// identity(i).
func WithTLSIdentities(p *PKI, aclText string, identity func(i int) string) Option {
	var aclFile string
	var once sync.Once
	return func(i int, cfg *server.Config) {
		once.Do(func() {
			if aclText != "" {
				aclFile = must(p.writeACL(aclText))
			}
		})
		cfg.TLS = must(p.files(identity(i)))
		cfg.GossipKeyFile = p.gossipKeyFile
		cfg.ACLFile = aclFile
	}
}

// WithIdentity gives the servers it applies to a certificate for identity
// cn instead. Put it after WithTLS, e.g. as an option of Cluster.AddWith.
func WithIdentity(p *PKI, cn string) Option {
	return func(i int, cfg *server.Config) {
		cfg.TLS = must(p.files(cn))
	}
}

// must is for options, which have no testing.TB to report to: writing a
// file in a test's temporary directory does not fail in a usable test
// environment, and a panic in the test goroutine still fails the test.
func must[T any](v T, err error) T {
	if err != nil {
		panic("servertest: " + err.Error())
	}
	return v
}

// writeFile replaces path atomically with data.
func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := certs.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
