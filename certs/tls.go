package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Command-line flag names, used in Files.Validate messages: cmd passes
// those messages to the user unchanged.
const (
	flagCert = "--tls-cert"
	flagKey  = "--tls-key"
	flagCA   = "--tls-ca"
)

// defaultCheckInterval bounds how often MaybeReload looks at the files.
const defaultCheckInterval = time.Second

// Files names the PEM files of a TLS identity: Cert (the certificate, maybe
// followed by intermediates), its private Key, and CA (the certificates
// that peers' certificates must chain to). They come from the flags
// --tls-cert, --tls-key and --tls-ca. Either all three are set (mutual TLS)
// or none (plaintext).
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether TLS is configured: all three files set.
func (f Files) Enabled() bool {
	return f.Cert != "" && f.Key != "" && f.CA != ""
}

// Validate reports an error unless all three files or none are set. The
// error names each missing flag and the flags given, e.g.
// "certs: --tls-key is required with --tls-cert". It does not look at the
// files themselves; NewReloader does.
func (f Files) Validate() error {
	var set, missing []string
	for _, x := range []struct{ flag, val string }{
		{flagCert, f.Cert}, {flagKey, f.Key}, {flagCA, f.CA},
	} {
		if x.val != "" {
			set = append(set, x.flag)
		} else {
			missing = append(missing, x.flag)
		}
	}
	if len(set) == 0 || len(missing) == 0 {
		return nil
	}
	verb := "is"
	if len(missing) > 1 {
		verb = "are"
	}
	return fmt.Errorf("certs: %s %s required with %s",
		strings.Join(missing, " and "), verb, strings.Join(set, " and "))
}

// Reloader holds the current certificate, key and CA pool read from Files
// and builds TLS configurations that always use the current ones. It is
// safe for concurrent use; the configurations it returns may be used by
// any number of listeners and dialers.
//
// Rotation: replace the files (preferably each atomically, e.g. with
// WriteFile: certificate and key are read as a pair, and a pair that does
// not match is refused and retried on the next change). New handshakes call
// MaybeReload, which notices changed files within a second; or call Reload,
// e.g. on SIGHUP.
type Reloader struct {
	files Files
	log   *slog.Logger
	now   func() time.Time
	// checkEvery rate-limits MaybeReload; tests set it to 0.
	checkEvery time.Duration
	// lastCheck is when MaybeReload last looked at the files (Unix ns).
	lastCheck atomic.Int64

	// mu serializes loads.
	mu sync.Mutex
	// stamps describe the files as they were when last loaded, successfully
	// or not; nil entries are files that could not be stat'ed.
	stamps []os.FileInfo

	cur atomic.Pointer[material]
}

// material is one consistent set of TLS credentials. Immutable.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

// NewReloader loads the files, which must all be set, and returns a
// Reloader serving them. It fails if a file cannot be read or parsed, the
// key does not match the certificate, or the certificate does not chain to
// a CA of f.CA at the current time. log receives reload events as given
// (the caller adds attributes such as the component); nil means
// slog.Default().
func NewReloader(f Files, log *slog.Logger) (*Reloader, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if !f.Enabled() {
		return nil, fmt.Errorf("certs: %s, %s and %s are required", flagCert, flagKey, flagCA)
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{
		files:      f,
		log:        log,
		now:        time.Now,
		checkEvery: defaultCheckInterval,
	}
	r.lastCheck.Store(r.now().UnixNano())
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.loadLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again and makes them current. On error the
// previous credentials stay in use and the error is returned for the caller
// to report. Connections already established are not affected.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.loadLocked()
	if err != nil {
		return err
	}
	r.logLoaded(m)
	return nil
}

// MaybeReload reloads the files if any of them changed (another file, size
// or modification time) since they were last loaded. It looks at most once
// per second, whatever the number of callers, and never blocks a caller on
// another's reload: the handshakes that call it use the credentials current
// at that moment. A failed reload is logged, keeps the previous
// credentials, and is retried only when the files change again.
func (r *Reloader) MaybeReload() {
	now := r.now().UnixNano()
	last := r.lastCheck.Load()
	if now-last < int64(r.checkEvery) || !r.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if !r.mu.TryLock() {
		return // a reload is under way
	}
	defer r.mu.Unlock()
	if sameStamps(r.stamps, r.stat()) {
		return
	}
	m, err := r.loadLocked()
	if err != nil {
		r.log.Warn("certificate reload failed, keeping the previous one", "err", err)
		return
	}
	r.logLoaded(m)
}

func (r *Reloader) logLoaded(m *material) {
	leaf := m.cert.Leaf
	r.log.Info("certificate loaded", "cn", leaf.Subject.CommonName,
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
}

// stat describes the files; nil for a file that cannot be stat'ed.
func (r *Reloader) stat() []os.FileInfo {
	out := make([]os.FileInfo, 0, 3)
	for _, name := range []string{r.files.Cert, r.files.Key, r.files.CA} {
		fi, err := os.Stat(name)
		if err != nil {
			fi = nil
		}
		out = append(out, fi)
	}
	return out
}

// sameStamps reports whether two stat results describe unchanged files.
// SameFile catches a file replaced by rename (as WriteFile and Kubernetes
// secret volumes do) even within one mtime tick.
func sameStamps(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == nil || y == nil {
			if x != y {
				return false
			}
			continue
		}
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}

// loadLocked reads the files and, if they are valid, makes them current.
// The stamps are taken before reading, so a change made during the read is
// seen by the next check. r.mu must be held.
func (r *Reloader) loadLocked() (*material, error) {
	stamps := r.stat()
	m, err := load(r.files, r.now())
	// Remember the stamps even on failure: retry when the files change, not
	// every second.
	r.stamps = stamps
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	return m, nil
}

// load reads and checks one set of credentials.
func load(f Files, now time.Time) (*material, error) {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: load %s and %s: %w", f.Cert, f.Key, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: parse %s: %w", f.Cert, err)
		}
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("certs: no PEM certificate in %s", f.CA)
	}
	// Peers verify this certificate against the same CA file, so one that
	// does not chain to it (a half-done rotation, an expired certificate)
	// would only fail later, on the other side: refuse it here.
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certs: parse chain in %s: %w", f.Cert, err)
		}
		inter.AddCert(c)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("certs: %s is not valid under %s: %w", f.Cert, f.CA, err)
	}
	return &material{cert: &pair, pool: pool}, nil
}

// Leaf returns the parsed current certificate; its Subject Common Name is
// this process's identity. The caller must not modify it.
func (r *Reloader) Leaf() *x509.Certificate {
	return r.cur.Load().cert.Leaf
}

// ServerConfig returns a TLS configuration for servers: TLS 1.3 only, the
// current certificate, and a client certificate required and verified
// against the current CA pool (use Identity to read the client's identity).
// Each handshake calls MaybeReload and then uses a configuration built from
// the current credentials (through GetConfigForClient), so both certificate
// and CA rotations apply to new connections. NextProtos set on the returned
// configuration before use carry over; gRPC's credentials.NewTLS adds "h2"
// itself.
func (r *Reloader) ServerConfig() *tls.Config {
	m := r.cur.Load()
	// The base configuration alone is also safe (it requires a verified
	// client certificate), should a caller drop GetConfigForClient.
	base := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cur.Load().cert, nil
		},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        m.pool,
		VerifyConnection: verifyOneCommonName,
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.MaybeReload()
		m := r.cur.Load()
		// Session ticket keys stay those of base (crypto/tls uses the
		// original Config's keys when the returned one sets none), and a
		// resumed session's client chain is verified again against this
		// ClientCAs, so resumption does not bypass a CA rotation.
		return &tls.Config{
			MinVersion:       tls.VersionTLS13,
			Certificates:     []tls.Certificate{*m.cert},
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        m.pool,
			NextProtos:       base.NextProtos,
			VerifyConnection: verifyOneCommonName,
		}, nil
	}
	return base
}

// ClientConfig returns a TLS configuration for clients: TLS 1.3 only,
// presenting the current certificate (GetClientCertificate calls
// MaybeReload, so a rotated client certificate is used from the next
// handshake), and verifying the server against the CA pool current when
// ClientConfig is called. A long-lived client that must follow a CA
// rotation calls ClientConfig again for new connections.
//
// serverName is the name the server certificate must carry; when empty,
// crypto/tls uses the host part of the dialed address.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	r.MaybeReload()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		RootCAs:    r.cur.Load().pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.MaybeReload()
			return r.cur.Load().cert, nil
		},
	}
}

// ErrManyCommonNames refuses a certificate whose subject has more than one
// Common Name: which one is the identity would depend on the parser (Go
// takes the last).
var ErrManyCommonNames = errors.New("certs: certificate has more than one Common Name")

// oidCommonName is the X.509 attribute type of a Common Name.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// commonNames counts the Common Name attributes of c's subject.
func commonNames(c *x509.Certificate) int {
	n := 0
	for _, a := range c.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			n++
		}
	}
	return n
}

// verifyOneCommonName refuses a connection whose peer certificate has more
// than one Common Name (ErrManyCommonNames).
func verifyOneCommonName(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	if n := commonNames(cs.PeerCertificates[0]); n > 1 {
		return fmt.Errorf("%w: %q has %d", ErrManyCommonNames, cs.PeerCertificates[0].Subject.String(), n)
	}
	return nil
}

// Identity returns the Common Name of the verified peer certificate of a
// connection (VerifiedChains[0][0]), and false if the peer presented no
// verified certificate, or its Common Name is empty or not the only one.
// Unverified certificates (PeerCertificates) are never trusted.
func Identity(state tls.ConnectionState) (string, bool) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	cn := leaf.Subject.CommonName
	if cn == "" || commonNames(leaf) > 1 {
		return "", false
	}
	return cn, true
}
