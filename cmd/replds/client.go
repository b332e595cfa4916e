package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"replds/certs"
	"replds/limits"
	repldspb "replds/proto"
)

// clientFlags are the connection flags shared by every client command.
type clientFlags struct {
	servers []string
	tlsCert string
	tlsKey  string
	tlsCA   string
}

// register adds the shared flags to cmd.
func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.servers, "server", nil,
		"server address HOST:PORT (repeatable; default $REPLDS_SERVER)")
	cmd.Flags().StringVar(&f.tlsCert, "tls-cert", "", "client certificate (PEM)")
	cmd.Flags().StringVar(&f.tlsKey, "tls-key", "", "client private key (PEM)")
	cmd.Flags().StringVar(&f.tlsCA, "tls-ca", "", "CA certificate that signed the servers (PEM)")
}

// serverList returns the servers to talk to: --server, else $REPLDS_SERVER
// (comma-separated).
func (f *clientFlags) serverList() ([]string, error) {
	servers := f.servers
	if len(servers) == 0 {
		if env := os.Getenv("REPLDS_SERVER"); env != "" {
			servers = strings.Split(env, ",")
		}
	}
	var out []string
	for _, s := range servers {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no server: give --server=HOST:PORT or set REPLDS_SERVER")
	}
	return out, nil
}

// dialOptions returns the gRPC options for connecting to servers: mutual
// TLS when the certificate flags are given, plaintext otherwise.
func (f *clientFlags) dialOptions() ([]grpc.DialOption, error) {
	files := certs.Files{Cert: f.tlsCert, Key: f.tlsKey, CA: f.tlsCA}
	if err := files.Validate(); err != nil {
		return nil, err
	}
	if !files.Enabled() {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	r, err := certs.NewReloader(files, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(r.ClientConfig("")))}, nil
}

// maxMessage bounds one gRPC message between client and server: a full
// batch at the servers' default limit, which also holds the largest node.
const maxMessage = limits.MaxBatchBytes

// call connects to the servers in turn and runs fn against the first one
// that answers; it moves on to the next only when a server is unreachable.
func (f *clientFlags) call(ctx context.Context, fn func(context.Context, repldspb.RepldsClient) error) error {
	servers, err := f.serverList()
	if err != nil {
		return err
	}
	opts, err := f.dialOptions()
	if err != nil {
		return err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	var last error
	for _, addr := range servers {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fmt.Errorf("server %s: %w", addr, err)
		}
		err = fn(ctx, repldspb.NewRepldsClient(conn))
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			return cliError(addr, err)
		}
		last = cliError(addr, err)
	}
	return last
}

// cliError turns an RPC error into one readable line.
func cliError(addr string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		msg := st.Message()
		if strings.Contains(msg, "server preface") || strings.Contains(msg, "handshake") {
			msg += " (does the server require TLS? give --tls-cert, --tls-key and --tls-ca)"
		}
		return fmt.Errorf("server %s unavailable: %s", addr, msg)
	case codes.PermissionDenied:
		return errors.New(strings.TrimPrefix(st.Message(), "server: "))
	case codes.NotFound:
		return fmt.Errorf("not found: %s", st.Message())
	case codes.InvalidArgument, codes.FailedPrecondition:
		return errors.New(st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("server %s: timed out", addr)
	default:
		return fmt.Errorf("server %s: %s: %s", addr, st.Code(), st.Message())
	}
}
