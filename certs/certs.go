package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// backdate is subtracted from NotBefore so that a certificate is valid at
// once on hosts whose clock is a little behind the issuer's.
const backdate = 5 * time.Minute

// defaultHosts are the subject alternative names Issue uses when given no
// hosts, so that a cluster on one machine works with no configuration.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// NewCA creates a self-signed CA certificate with Subject Common Name cn,
// valid for days days, and its ECDSA P-256 key. The CA may sign leaf
// certificates only (path length 0). It returns both PEM-encoded; the key
// as PKCS #8 ("PRIVATE KEY"). Write the key with mode 0600.
func NewCA(cn string, days int) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, errors.New("certs: empty CA common name")
	}
	if days <= 0 {
		return nil, nil, fmt.Errorf("certs: CA validity %d days, want > 0", days)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(0, 0, days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	return encode(der, key)
}

// Issue creates a certificate signed by the CA given as PEM (the key in
// PKCS #8, SEC 1 or PKCS #1 form), with Subject Common Name cn (the identity
// in ACLs), valid for days days but never past the CA's own expiry, and a
// fresh ECDSA P-256 key. The certificate is valid for both TLS server and
// TLS client authentication.
//
// Each of hosts becomes a subject alternative name: an IP address if it
// parses as one, a DNS name otherwise (wildcards allowed). With no hosts
// the certificate names "localhost", 127.0.0.1 and ::1, which
// suits a cluster on one machine and clients that only need to
// authenticate. The serial number is a random 128-bit number.
//
// It returns the certificate and key PEM-encoded; the key as PKCS #8.
// Write the key with mode 0600.
func Issue(caCertPEM, caKeyPEM []byte, cn string, hosts []string, days int) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	return issue(caCertPEM, caKeyPEM, cn, hosts, days,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
}

// IssueClient is Issue for a client certificate: TLS client authentication
// only, and no subject alternative names, so that it cannot pass for a
// server (a TLS client requires serverAuth of the server's certificate).
func IssueClient(caCertPEM, caKeyPEM []byte, cn string, days int) (certPEM, keyPEM []byte, err error) {
	return issue(caCertPEM, caKeyPEM, cn, nil, days, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

func issue(caCertPEM, caKeyPEM []byte, cn string, hosts []string, days int, usage []x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, errors.New("certs: empty common name")
	}
	if days <= 0 {
		return nil, nil, fmt.Errorf("certs: validity %d days, want > 0", days)
	}
	ca, signer, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	var dnsNames []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("certs: invalid host %q: want an IP address or a DNS name", h)
		}
		dnsNames = append(dnsNames, h)
	}

	now := time.Now()
	notAfter := now.AddDate(0, 0, days)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("certs: CA %q expired on %s", ca.Subject.CommonName, ca.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create certificate: %w", err)
	}
	return encode(der, key)
}

// parseCA parses a CA certificate and its key and checks that they belong
// together and that the certificate may sign certificates.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	// X509KeyPair accepts every common key encoding and checks that the key
	// matches the certificate.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parse CA: %w", err)
	}
	ca := pair.Leaf
	if ca == nil {
		if ca, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("certs: parse CA: %w", err)
		}
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("certs: %q is not a CA certificate", ca.Subject.CommonName)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("certs: CA key type %T cannot sign", pair.PrivateKey)
	}
	return ca, signer, nil
}

// validDNSName reports whether h can be a DNS subject alternative name:
// dot-separated labels of letters, digits, '-' and '_', the first label
// possibly "*".
func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		if label == "*" && i == 0 {
			continue
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// newSerial returns a random serial number in [1, 2^128).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	limit.Sub(limit, big.NewInt(1))
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("certs: generate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// encode PEM-encodes a DER certificate and a key.
func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// WriteFile atomically replaces the file at path with data and gives it
// mode: it writes a temporary file in the same directory, fsyncs it, sets
// the mode, renames it over path and fsyncs the directory. Readers see the
// old or the new content, never a mix, and the content survives a crash
// once WriteFile returns. The caller chooses the mode: 0600 for private
// keys, 0644 for certificates. On error the temporary file is removed and
// path is untouched.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file 0600, so a key is never readable by
	// others, not even before the chmod.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	tmp := f.Name()
	if err := writeSync(f, data, mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("certs: sync dir of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("certs: sync dir of %s: %w", path, err)
	}
	return nil
}

// writeSync writes data to f, flushes it to disk and sets its mode.
func writeSync(f *os.File, data []byte, mode os.FileMode) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Chmod(mode)
}
