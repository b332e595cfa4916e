// Package target stores backups: a small interface over object storage
// (Target), with a local-directory implementation (file://) and an S3 one
// (s3://), and Open to pick one by URL. Every implementation passes the
// conformance suite in targettest.
//
// Keys are "/"-separated relative names ("JOB/ID/manifest.json"): no empty,
// "." or ".." segments, no leading or trailing "/", no control characters
// or backslashes. Objects appear whole or not at all: a Put that fails or
// is cancelled leaves nothing under its key.
package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotExist: no object under the key.
	ErrNotExist = errors.New("target: object does not exist")
	// ErrExists: PutIfAbsent found an object under the key.
	ErrExists = errors.New("target: object exists")
)

// Info describes one object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Target is where backups are kept. Implementations are safe for
// concurrent use; each call is independent (no open handles between calls).
type Target interface {
	// Put stores what r yields under key, replacing any object there. The
	// object appears only once r reached EOF and everything is durable;
	// when r or ctx fails, nothing is left under key.
	Put(ctx context.Context, key string, r io.Reader) error
	// PutIfAbsent is Put that fails with ErrExists when key holds an
	// object, atomically: of two concurrent calls at most one succeeds.
	PutIfAbsent(ctx context.Context, key string, r io.Reader) error
	// Get returns n bytes of the object from offset off; n < 0 reads to the
	// end. A missing object is ErrNotExist.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Stat describes the object under key, or fails with ErrNotExist.
	Stat(ctx context.Context, key string) (Info, error)
	// List calls fn for every object whose key starts with prefix (a plain
	// string prefix, as in S3), in ascending key order, until fn returns an
	// error, which List returns.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes the object under key; a missing object is no error.
	Delete(ctx context.Context, key string) error
	// String describes the target for logs and errors: its URL without
	// credentials.
	String() string
}

// Open returns the target a URL names:
//
//	file:///var/backups/replds        a local directory (created if missing)
//	s3://bucket/some/prefix?region=eu-west-1&endpoint=http://127.0.0.1:7070
//
// S3 credentials come from the standard AWS chain (environment, shared
// config and credentials files, instance roles), never from the URL.
func Open(ctx context.Context, rawURL string) (Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("target %q: %v", rawURL, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("target %s: credentials do not belong in the URL; use the environment or AWS configuration", Redact(rawURL))
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("target %q: file URLs name a local path (file:///dir)", rawURL)
		}
		if len(u.Query()) > 0 {
			return nil, fmt.Errorf("target %q: file URLs take no parameters", rawURL)
		}
		return OpenDir(u.Path)
	case "s3":
		return openS3(ctx, u)
	case "":
		return nil, fmt.Errorf("target %q: want a URL (file:///dir or s3://bucket/prefix)", rawURL)
	}
	return nil, fmt.Errorf("target %q: unknown scheme %q (want file or s3)", rawURL, u.Scheme)
}

// Redact returns rawURL without user information, for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	return u.String()
}

// ValidateKey reports whether key is a valid object key.
func ValidateKey(key string) error {
	if key == "" {
		return errors.New("target: empty key")
	}
	if strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("target: key %q: leading or trailing /", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("target: key %q: empty, . or .. segment", key)
		}
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("target: key %q: control character or backslash", key)
		}
	}
	return nil
}
