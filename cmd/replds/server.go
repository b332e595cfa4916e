package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/replds/replds/server"
)

// newServerCmd runs one replds server.
func newServerCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var logf logFlags
	var prov provisionFlags
	var configFile string
	cmd := &cobra.Command{
		Use:   "server --addr=HOST:PORT --data-dir=DIR [--peer=HOST:PORT ...] [--config=FILE]",
		Short: "Run a replds server, a peer of a cluster",
		Long: `Run a replds server, a peer of a cluster.

Every flag may also come from the environment, REPLDS_ and its name in upper
case with underscores (--data-dir: REPLDS_DATA_DIR; repeatable flags take a
comma-separated list, REPLDS_PEER=a:12100,b:12100), or from the --config
file: one "name = value" per line (name without dashes; a repeatable flag
on one line per value), # starts a comment. The command line wins over the
environment, which wins over the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := logf.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.JobKinds = jobKinds
			if err := cfg.Validate(); err != nil {
				return localError(err, exitUsage)
			}
			if err := prov.validate(); err != nil {
				return localError(err, exitUsage)
			}
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			stop := onSIGHUP(func() {
				if err := s.Reload(); err != nil {
					log.Error("reload failed; keeping the previous configuration", "err", err)
				}
			})
			defer stop()
			if prov.from != "" {
				ctx, cancel := context.WithCancel(cmd.Context())
				done := make(chan struct{})
				defer func() { cancel(); <-done }()
				go func() {
					defer close(done)
					if err := prov.provision(ctx, s, log); err != nil {
						log.Error("provisioning from a backup failed; the server runs on, empty", "err", err)
					}
				}()
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	prov.register(f)
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "gRPC listen address HOST:PORT")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", "", "membership listen address HOST:PORT (default: --addr with port+1)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "gRPC address HOST:PORT peers reach this server at (default: --addr)")
	f.StringVar(&cfg.Name, "name", "", "member name (default: the gRPC address)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory of the server's database (required)")
	f.StringArrayVar(&cfg.Peers, "peer", nil, "gRPC address HOST:PORT of another server (repeatable)")
	f.DurationVar(&cfg.SyncInterval, "sync-interval", cfg.SyncInterval, "period of digest sync rounds with a random peer")
	f.IntVar(&cfg.MaxNodeSize, "max-node-size", cfg.MaxNodeSize, "largest data of one node, in bytes")
	f.StringVar(&cfg.GossipProfile, "gossip-profile", "lan", "membership timings: lan or local (fast, for one machine)")
	f.StringVar(&cfg.TLS.Cert, "tls-cert", "", "server certificate (PEM), also presented to peers")
	f.StringVar(&cfg.TLS.Key, "tls-key", "", "private key of --tls-cert (PEM)")
	f.StringVar(&cfg.TLS.CA, "tls-ca", "", "CA certificate that signs servers and clients (PEM)")
	f.StringVar(&cfg.ACLFile, "acls", "", "ACL file (identity path read|write, identity peer); reloaded on SIGHUP")
	f.StringVar(&cfg.GossipKeyFile, "gossip-key-file", "", "membership encryption key (base64; required with TLS)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "", "serve /metrics, /healthz and /readyz on HOST:PORT (HTTPS with --tls-*)")
	f.BoolVar(&cfg.HTTPHealthzNoCert, "http-healthz-no-cert", false, "with TLS, answer /healthz without a client certificate (local probes)")
	f.DurationVar(&cfg.MemoryTrimInterval, "memory-trim-interval", cfg.MemoryTrimInterval, "how often an idle server returns freed memory to the system (0: never)")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "on SIGTERM, how long in-flight requests may take to finish")
	f.DurationVar(&cfg.ReapDeadAfter, "reap-dead-after", cfg.ReapDeadAfter, "how long a member that failed or left is still listed, unless it comes back")
	// Limits against hostile load (README, Security).
	f.IntVar(&cfg.MaxRequestSize, "max-request-size", cfg.MaxRequestSize, "largest Get, List, Watch or Status request, in bytes")
	f.IntVar(&cfg.MaxTokenOrigins, "max-token-origins", cfg.MaxTokenOrigins, "most origins of a Watch resume token; a longer one gets a full replay")
	f.Int64Var(&cfg.MaxInflightBytes, "max-inflight-bytes", cfg.MaxInflightBytes, "bytes of Store requests handled at once, server-wide")
	f.DurationVar(&cfg.WatchSendTimeout, "watch-send-timeout", cfg.WatchSendTimeout, "a Watch client that takes no message for this long is cut (ResourceExhausted)")
	f.Int64Var(&cfg.WatchMemory, "watch-memory", cfg.WatchMemory, "bytes of Watch messages queued for clients, server-wide")
	f.IntVar(&cfg.WatchPageBytes, "watch-page-bytes", cfg.WatchPageBytes, "data of one Watch replay message, in bytes")
	f.IntVar(&cfg.MaxWatchPerConn, "max-watch-per-connection", cfg.MaxWatchPerConn, "Watch streams open on one connection (0: no bound)")
	f.IntVar(&cfg.MaxWatchPerIdentity, "max-watch-per-identity", cfg.MaxWatchPerIdentity, "Watch streams open by one identity, with TLS (0: no bound)")
	f.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", cfg.HandshakeTimeout, "a connection that has not finished its TLS handshake by then is closed")
	f.IntVar(&cfg.MaxPendingHandshakes, "max-pending-handshakes", cfg.MaxPendingHandshakes, "connections handshaking at once from unknown addresses; more are closed")
	f.IntVar(&cfg.HandshakeReserve, "handshake-reserve", cfg.HandshakeReserve, "more pending handshakes kept for members and addresses that authenticated before")
	f.StringVar(&configFile, "config", "", "file of settings, one \"name = value\" a line (see above)")
	logf.register(cmd)
	bindAllEnv(f)
	return cmd
}
