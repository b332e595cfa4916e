package main

import (
	"context"

	"github.com/spf13/cobra"

	"replds/server"
)

// newServerCmd runs one replds server.
func newServerCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var logf logFlags
	var prov provisionFlags
	cmd := &cobra.Command{
		Use:   "server --addr=HOST:PORT --data-dir=DIR [--peer=HOST:PORT ...]",
		Short: "Run a replds server, a peer of a cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := logf.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.JobKinds = jobKinds
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := prov.validate(); err != nil {
				return err
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
	f.DurationVar(&cfg.TombstoneGrace, "tombstone-grace", cfg.TombstoneGrace, "keep a tombstone at least this long, then collect it once every member has it")
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
	logf.register(cmd)
	return cmd
}
