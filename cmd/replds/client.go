package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/certs"
	"github.com/replds/replds/limits"
	repldspb "github.com/replds/replds/proto"
)

// defaultPort is the port of a --server given without one.
const defaultPort = "12100"

// clientFlags are the connection flags shared by every client command,
// each with a default from the environment (REPLDS_SERVER, REPLDS_TLS_CERT,
// ...: env.go). Commands that make requests and wait for answers also take
// the timeouts (registerWithTimeouts).
type clientFlags struct {
	servers []string
	tlsCert string
	tlsKey  string
	tlsCA   string

	// dialTimeout bounds the wait for a server's connection to be ready
	// (TCP, TLS and HTTP/2 handshakes); timeout bounds each request. Zero
	// means no bound (pull, which has its own idle timeout).
	dialTimeout time.Duration
	timeout     time.Duration
}

// register adds the connection flags to cmd.
func (f *clientFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.servers, "server", nil,
		"server address HOST[:PORT], port "+defaultPort+" if left out (repeatable: the next is tried when one does not answer)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "client certificate (PEM)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "client private key (PEM)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate that signed the servers (PEM)")
	bindEnv(fs, "server", "tls-cert", "tls-key", "tls-ca")
}

// registerWithTimeouts adds the connection flags and the timeouts to cmd.
func (f *clientFlags) registerWithTimeouts(cmd *cobra.Command) {
	f.registerWithDialTimeout(cmd)
	fs := cmd.Flags()
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second,
		"how long a server may take to answer one request (store: one batch) before the next --server is tried")
	bindEnv(fs, "timeout")
}

// registerWithDialTimeout adds the connection flags and --dial-timeout to
// cmd, for a command that streams for as long as it runs (watch).
func (f *clientFlags) registerWithDialTimeout(cmd *cobra.Command) {
	f.register(cmd)
	fs := cmd.Flags()
	fs.DurationVar(&f.dialTimeout, "dial-timeout", 3*time.Second,
		"how long a server may take to accept the connection before the next --server is tried")
	bindEnv(fs, "dial-timeout")
}

// serverList returns the servers to talk to (--server, or $REPLDS_SERVER
// comma-separated), with the default port added where none is given.
func (f *clientFlags) serverList() ([]string, error) {
	var out []string
	for _, s := range f.servers {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		addr, err := withDefaultPort(s)
		if err != nil {
			return nil, err
		}
		out = append(out, addr)
	}
	if len(out) == 0 {
		return nil, usageErrorf("no server: give --server=HOST[:PORT] or set REPLDS_SERVER")
	}
	return out, nil
}

// withDefaultPort returns s with defaultPort added if s names a host
// only; gRPC would dial port 443 otherwise.
func withDefaultPort(s string) (string, error) {
	if strings.Contains(s, "://") {
		return s, nil // a gRPC target (dns:///host:port): taken as it is
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	bracketed := strings.HasPrefix(s, "[")
	if bracketed != strings.HasSuffix(s, "]") || strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return "", usageErrorf("--server %q: want HOST or HOST:PORT", s)
	}
	return net.JoinHostPort(host, defaultPort), nil
}

// dialOptions returns the gRPC options for connecting to servers: mutual
// TLS when the certificate flags are given, plaintext otherwise; each
// unary request bounded by --timeout.
func (f *clientFlags) dialOptions() ([]grpc.DialOption, error) {
	files := certs.Files{Cert: f.tlsCert, Key: f.tlsKey, CA: f.tlsCA}
	if err := files.Validate(); err != nil {
		return nil, localError(err, exitUsage)
	}
	var opts []grpc.DialOption
	if !files.Enabled() {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		r, err := certs.NewReloader(files, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, localError(err, exitUsage)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(r.ClientConfig(""))))
	}
	if f.timeout > 0 {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			ctx, cancel := context.WithTimeout(ctx, f.timeout)
			defer cancel()
			return invoker(ctx, method, req, reply, cc, o...)
		}))
	}
	return opts, nil
}

// maxMessage bounds one gRPC message between client and server: a full
// batch at the servers' default limit, which also holds the largest node.
const maxMessage = limits.MaxBatchBytes

// errNoAnswer is why a server was left: it did not accept the connection
// within --dial-timeout.
var errNoAnswer = errors.New("no answer")

// connect returns a connection to addr that is ready, or that failed for a
// reason its first request reports; errNoAnswer if it is still connecting
// after --dial-timeout. A server that accepts TCP and never answers is
// left after that long, not the 20 s of gRPC's own connect timeout.
func (f *clientFlags) connect(ctx context.Context, addr string, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, usageErrorf("--server %q: %v", addr, err)
	}
	if f.dialTimeout <= 0 {
		return conn, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.dialTimeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready || s == connectivity.TransientFailure {
			return conn, nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, errNoAnswer
		}
	}
}

// call connects to the servers in turn and runs fn against the first one
// that answers; it moves on to the next only when a server is unreachable
// or gave no answer in time (a write it may have applied meanwhile is
// written again, with the same data, by the next).
func (f *clientFlags) call(ctx context.Context, fn func(context.Context, repldspb.RepldsClient) error) error {
	_, err := f.callAt(ctx, fn)
	return err
}

// callAt is call, and returns the address of the server that answered.
func (f *clientFlags) callAt(ctx context.Context, fn func(context.Context, repldspb.RepldsClient) error) (string, error) {
	servers, err := f.serverList()
	if err != nil {
		return "", err
	}
	opts, err := f.dialOptions()
	if err != nil {
		return "", err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	var errs []error
	for _, addr := range servers {
		conn, err := f.connect(ctx, addr, opts)
		if errors.Is(err, errNoAnswer) {
			errs = append(errs, withExit(exitUnavailable, fmt.Errorf("server %s: no answer within %v (--dial-timeout)", addr, f.dialTimeout)))
			continue
		}
		if err != nil {
			return "", err
		}
		err = fn(ctx, repldspb.NewRepldsClient(conn))
		conn.Close()
		if !retryable(ctx, err) {
			return addr, cliError(addr, err)
		}
		errs = append(errs, cliError(addr, err))
	}
	return "", joinErrors(errs)
}

// retryable reports whether err, from a call made under ctx, means that
// the server did not answer, so that the next one should be tried.
func retryable(ctx context.Context, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return ctx.Err() == nil // the request's own timeout, not the caller's
	}
	return false
}

// joinErrors returns the errors of the servers tried, one line, with the
// exit code of the last.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return withExit(exitCode(errs[len(errs)-1]), errors.New(strings.Join(msgs, "; ")))
}
