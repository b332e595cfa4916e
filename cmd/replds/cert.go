package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/replds/replds/certs"
)

// newCertCmd groups the certificate tools, so nobody needs openssl to run
// replds with TLS.
func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make a CA, certificates and a gossip key for a TLS cluster",
	}
	cmd.AddCommand(newCertCACmd(), newCertIssueCmd(), newCertGossipKeyCmd())
	return cmd
}

func newCertCACmd() *cobra.Command {
	opts := struct {
		cn, cert, key string
		days          int
	}{cn: "replds CA", cert: "ca.crt", key: "ca.key", days: 3650}
	cmd := &cobra.Command{
		Use:   "ca [--cert=ca.crt] [--key=ca.key] [--cn=NAME] [--days=N]",
		Short: "Create a new CA (certificate 0644, key 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.days <= 0 {
				return fmt.Errorf("--days %d: must be positive", opts.days)
			}
			if err := refuseOverwrite(opts.cert, opts.key); err != nil {
				return err
			}
			certPEM, keyPEM, err := certs.NewCA(opts.cn, opts.days)
			if err != nil {
				return err
			}
			if err := writePair(opts.cert, opts.key, certPEM, keyPEM); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote CA %q: certificate %s (0644), private key %s (0600), valid %d days\n",
				opts.cn, opts.cert, opts.key, opts.days)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.cert, "cert", opts.cert, "where to write the CA certificate")
	f.StringVar(&opts.key, "key", opts.key, "where to write the CA private key")
	f.StringVar(&opts.cn, "cn", opts.cn, "Common Name of the CA")
	f.IntVar(&opts.days, "days", opts.days, "validity in days")
	return cmd
}

func newCertIssueCmd() *cobra.Command {
	opts := struct {
		ca, caKey, cn, cert, key string
		hosts                    []string
		days                     int
		server, client           bool
	}{ca: "ca.crt", caKey: "ca.key", days: 365}
	cmd := &cobra.Command{
		Use:   "issue --cn=NAME [--server [--host=H ...] | --client] [--ca=ca.crt] [--ca-key=ca.key] [--days=N]",
		Short: "Issue a server or client certificate; NAME is the identity in ACLs",
		Long: `Issue a certificate signed by the CA. Its Common Name is the identity that ACL
rules name. A server certificate (--server, or any --host) is usable both as a
server and as a client (servers dial their peers) and gets the --host names and
IPs as SANs (default: localhost, 127.0.0.1 and ::1). Any other certificate is a
client certificate (--client, the default without --host): client
authentication only and no SANs, so that a host's certificate cannot pass for a
server. Writes NAME.crt (0644) and NAME.key (0600) unless --cert and --key say
otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.cn == "" {
				return errors.New("--cn is required: the identity the certificate carries")
			}
			if opts.days <= 0 {
				return fmt.Errorf("--days %d: must be positive", opts.days)
			}
			if opts.client && (opts.server || len(opts.hosts) > 0) {
				return errors.New("--client takes neither --server nor --host: a client certificate names no host")
			}
			if opts.cert == "" {
				opts.cert = opts.cn + ".crt"
			}
			if opts.key == "" {
				opts.key = opts.cn + ".key"
			}
			if err := refuseOverwrite(opts.cert, opts.key); err != nil {
				return err
			}
			caCert, err := os.ReadFile(opts.ca)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			caKey, err := os.ReadFile(opts.caKey)
			if err != nil {
				return fmt.Errorf("--ca-key: %w", err)
			}
			issue := func() ([]byte, []byte, error) {
				return certs.IssueClient(caCert, caKey, opts.cn, opts.days)
			}
			if opts.server || len(opts.hosts) > 0 {
				issue = func() ([]byte, []byte, error) {
					return certs.Issue(caCert, caKey, opts.cn, opts.hosts, opts.days)
				}
			}
			certPEM, keyPEM, err := issue()
			if err != nil {
				return err
			}
			if err := writePair(opts.cert, opts.key, certPEM, keyPEM); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote identity %q: certificate %s (0644), private key %s (0600), %s\n",
				opts.cn, opts.cert, opts.key, describeCert(certPEM))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.ca, "ca", opts.ca, "CA certificate")
	f.StringVar(&opts.caKey, "ca-key", opts.caKey, "CA private key")
	f.StringVar(&opts.cn, "cn", "", "Common Name: the identity in ACLs (required)")
	f.StringArrayVar(&opts.hosts, "host", nil, "DNS name or IP the server is reached at (repeatable; implies --server)")
	f.BoolVar(&opts.server, "server", false, "a server certificate: server and client authentication, --host SANs")
	f.BoolVar(&opts.client, "client", false, "a client certificate: client authentication only, no SANs (the default without --host)")
	f.StringVar(&opts.cert, "cert", "", "where to write the certificate (default NAME.crt)")
	f.StringVar(&opts.key, "key", "", "where to write the private key (default NAME.key)")
	f.IntVar(&opts.days, "days", opts.days, "validity in days")
	return cmd
}

func newCertGossipKeyCmd() *cobra.Command {
	out := "gossip.key"
	cmd := &cobra.Command{
		Use:   "gossip-key [--out=gossip.key]",
		Short: "Create the key that encrypts membership traffic between servers (0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := refuseOverwrite(out); err != nil {
				return err
			}
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			if err := certs.WriteFile(out, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote gossip key %s (0600): give it to every server (--gossip-key-file)\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", out, "where to write the key")
	return cmd
}

// describeCert says whom the certificate certPEM serves and until when,
// read from the certificate itself.
func describeCert(certPEM []byte) string {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "unreadable"
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "unreadable"
	}
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return fmt.Sprintf("for %s, valid until %s", strings.Join(names, ", "), c.NotAfter.UTC().Format(time.DateOnly))
}

// writePair writes a private key (0600, first) and its certificate (0644).
func writePair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := certs.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return certs.WriteFile(certPath, certPEM, 0o644)
}

// refuseOverwrite fails if any of the files exists: keys are never
// replaced by accident.
func refuseOverwrite(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first to replace it", p)
		}
	}
	return nil
}
