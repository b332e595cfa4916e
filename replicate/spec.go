package replicate

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
)

// Kind is the name of the job kind: definitions live at
// /_replds/jobs/replicate/NAME in the destination cluster.
const Kind = "replicate"

// Spec is a replication job's definition, the JSON data of its node.
type Spec struct {
	// Source lists the servers (HOST:PORT) of the source cluster. The
	// runner follows one at a time and moves to the next after a failure.
	Source []string `json:"source"`
	// SourcePrefix is the subtree of the source cluster followed (default
	// "/", which leaves out the source's /_replds).
	SourcePrefix string `json:"source_prefix,omitempty"`
	// DestPrefix is where SourcePrefix lands here (default: SourcePrefix):
	// a source path SourcePrefix/x becomes DestPrefix/x.
	DestPrefix string `json:"dest_prefix,omitempty"`
	// Exclude lists prefixes under SourcePrefix that are not replicated.
	Exclude []string `json:"exclude,omitempty"`
	// TLSCert, TLSKey and TLSCA are files on the destination's servers (keys
	// never live in the tree): the client identity the job presents to the
	// source cluster and the CA that signed the source's servers. All three
	// or none (plaintext).
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// Paused stops the job until it is cleared; the resume token is kept.
	Paused bool `json:"paused,omitempty"`
	// Owner is the identity that wrote the definition, recorded by the
	// server: it had write on DestPrefix then.
	Owner string `json:"owner,omitempty"`
}

// ParseSpec decodes and checks a spec, filling the defaults and naming the
// offending field. It does no I/O (the TLS files are read by the runner).
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if err := jobs.DecodeSpec(data, &s); err != nil {
		return s, err
	}
	if len(s.Source) == 0 {
		return s, errors.New(`spec: field "source": required: the source cluster's servers, HOST:PORT`)
	}
	for i, addr := range s.Source {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return s, fmt.Errorf("spec: field \"source\"[%d]: %q: want HOST:PORT", i, addr)
		}
	}
	if s.SourcePrefix == "" {
		s.SourcePrefix = "/"
	}
	if err := checkPrefix(s.SourcePrefix); err != nil {
		return s, fmt.Errorf("spec: field \"source_prefix\": %w", err)
	}
	if s.DestPrefix == "" {
		s.DestPrefix = s.SourcePrefix
	}
	if err := checkPrefix(s.DestPrefix); err != nil {
		return s, fmt.Errorf("spec: field \"dest_prefix\": %w", err)
	}
	for i, e := range s.Exclude {
		if err := nodepath.ValidatePrefix(e); err != nil {
			return s, fmt.Errorf("spec: field \"exclude\"[%d]: %w", i, err)
		}
		if e == s.SourcePrefix || !nodepath.Under(e, s.SourcePrefix) {
			return s, fmt.Errorf("spec: field \"exclude\"[%d]: %s is not a prefix under the source prefix %s", i, nodepath.Quote(e), nodepath.Quote(s.SourcePrefix))
		}
	}
	tls := map[string]string{"tls_cert": s.TLSCert, "tls_key": s.TLSKey, "tls_ca": s.TLSCA}
	var set, missing []string
	for _, f := range []string{"tls_cert", "tls_key", "tls_ca"} {
		if tls[f] == "" {
			missing = append(missing, f)
		} else {
			set = append(set, f)
			if !strings.HasPrefix(tls[f], "/") {
				return s, fmt.Errorf("spec: field %q: %q: want an absolute path on the destination's servers", f, tls[f])
			}
		}
	}
	if len(set) > 0 && len(missing) > 0 {
		return s, fmt.Errorf("spec: field %q: required with %q (all three or none)", missing[0], set[0])
	}
	return s, nil
}

// checkPrefix checks a source or destination prefix: canonical, and not
// in the reserved namespace (jobs and status are each cluster's own).
func checkPrefix(p string) error {
	if err := nodepath.ValidatePrefix(p); err != nil {
		return err
	}
	if p != "/" && nodepath.IsReserved(p) {
		return fmt.Errorf("%s is in the reserved namespace, which is never replicated", nodepath.Quote(p))
	}
	return nil
}

// tokenFor identifies what a resume token covers: the source prefix, the
// excludes and the destination prefix. A spec that changes any of them
// makes the job copy again (a changed source list or paused keeps it).
func (s *Spec) tokenFor() string {
	return s.SourcePrefix + "\x00" + strings.Join(s.Exclude, "\x00") + "\x00" + s.DestPrefix
}

// rewrite maps a source path to its destination path; ok is false for a
// path outside SourcePrefix, under an excluded prefix, in the reserved
// namespace, or that has no destination path (the prefix itself onto "/").
// replicated reports whether the destination path dest is one that the
// job's rewrite produces: under the destination prefix, from a source
// path that is not excluded.
func (s *Spec) replicated(dest string) bool {
	if !nodepath.Under(dest, s.DestPrefix) {
		return false
	}
	rest := dest
	if s.DestPrefix != "/" {
		rest = dest[len(s.DestPrefix):]
	}
	src := s.SourcePrefix + rest
	if s.SourcePrefix == "/" {
		src = rest
	}
	out, ok := s.rewrite(src)
	return ok && out == dest
}

func (s *Spec) rewrite(p string) (string, bool) {
	if !nodepath.Under(p, s.SourcePrefix) || nodepath.IsReserved(p) {
		return "", false
	}
	for _, e := range s.Exclude {
		if nodepath.Under(p, e) {
			return "", false
		}
	}
	rest := p
	if s.SourcePrefix != "/" {
		rest = p[len(s.SourcePrefix):]
	}
	var out string
	switch {
	case s.DestPrefix == "/":
		out = rest
	default:
		out = s.DestPrefix + rest
	}
	if out == "" || out == "/" || nodepath.IsReserved(out) {
		return "", false
	}
	return out, true
}

// Request is the data of a replication job's request node
// (/_replds/requests/replicate/NAME).
type Request struct {
	// Action is "stop" (apply everything the source held when the runner
	// got the request, then stop), "abort" (stop at once) or "start"
	// (resume a stopped job from its token).
	Action string `json:"action"`
}

// Actions of a Request.
const (
	ActionStop  = "stop"
	ActionAbort = "abort"
	ActionStart = "start"
)

// ParseRequest decodes a request node's data, naming the offending field.
func ParseRequest(data []byte) (Request, error) {
	var r Request
	if err := jobs.DecodeSpec(data, &r); err != nil {
		return r, errors.New("request: " + strings.TrimPrefix(err.Error(), "spec: "))
	}
	switch r.Action {
	case ActionStop, ActionAbort, ActionStart:
		return r, nil
	}
	return r, fmt.Errorf(`request: field "action": %q: want "stop", "abort" or "start"`, r.Action)
}
