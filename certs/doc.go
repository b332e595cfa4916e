// Package certs makes the certificates of a replds cluster and builds the
// TLS configurations its servers and clients use, reloading certificate
// files when they change so that a rotation needs no restart.
//
// # Certificates
//
// NewCA creates a self-signed CA; Issue signs, with it, a certificate that
// is valid both as a TLS server and as a TLS client certificate, because
// replds servers are also clients of their peers. The certificate's Subject
// Common Name is the identity used in ACLs (see package acl). Keys are ECDSA
// P-256, PEM-encoded as PKCS #8 ("PRIVATE KEY"). WriteFile stores them
// atomically.
//
// # TLS
//
// A Reloader holds the current certificate, key and CA pool read from Files.
// Its ServerConfig requires TLS 1.3 and a client certificate verified
// against the current CA pool; its ClientConfig presents the current
// certificate. Both pick up rotated files for new connections: before a
// handshake the Reloader checks, at most once per second, whether a file's
// identity, size or modification time changed, and reloads if so.
// Established connections keep the certificate they were made with.
//
// # Invariants
//
// A Reloader never serves a half-loaded state: a certificate, its key and
// the CA pool are swapped together, and only after the certificate was
// checked to match the key and to chain to the CA pool. A failed reload
// keeps the previous state.
package certs
