package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/replds/replds/certs"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/limits"
)

// Config configures a Server.
type Config struct {
	// Addr is the gRPC listen address (HOST:PORT; port 0 picks one).
	Addr string
	// GossipAddr is the memberlist listen address. Empty means the host of
	// Addr with the port of Addr plus one (port 0 when Addr's port is 0).
	GossipAddr string
	// AdvertiseAddr is the gRPC address announced to peers through
	// membership, for when they must reach this server at another address
	// than Addr (NAT, a proxy). Empty means the listen address.
	AdvertiseAddr string
	// Name is this server's member name. Empty means the gRPC address.
	Name string
	// DataDir holds the store file.
	DataDir string
	// Peers are gRPC addresses of other servers to join through.
	Peers []string
	// SyncInterval is the period of digest sync rounds.
	SyncInterval time.Duration
	// RejoinInterval is how often configured peers that are not alive
	// members are joined again.
	RejoinInterval time.Duration
	// BookmarkInterval is how often an idle Watch stream gets a bookmark.
	BookmarkInterval time.Duration
	// MaxNodeSize bounds the data of one node.
	MaxNodeSize int
	// MaxBatch bounds the writes in one Store call, MaxBatchBytes their
	// data.
	MaxBatch      int
	MaxBatchBytes int
	// MaxRequestSize bounds a request of the methods that need little
	// (Get, List, Watch, Status; Hello, Tree and Buckets between servers);
	// larger ones are refused before they are decoded. Store, Push and
	// Sync are bounded by the batch limits (maxMessage).
	MaxRequestSize int
	// MaxTokenOrigins bounds the origins of a Watch resume token; a longer
	// token is ignored and the client gets a full replay (a reset).
	MaxTokenOrigins int
	// MaxInflightBytes bounds the bytes of Store requests being handled
	// at once, server-wide; a request beyond it is refused with
	// ResourceExhausted. At least maxMessage.
	MaxInflightBytes int64
	// WatchSendTimeout bounds how long a Watch stream may wait for its
	// client to take a message: past it, the stream ends with
	// ResourceExhausted and the client resumes from its token.
	WatchSendTimeout time.Duration
	// WatchMemory bounds the bytes of Watch messages queued for clients,
	// server-wide; a stream whose next message would pass it ends with
	// ResourceExhausted. At least maxMessage.
	WatchMemory int64
	// WatchPageBytes bounds the data of one replay message of a Watch
	// stream: what a client that does not read pins on the server.
	WatchPageBytes int
	// MaxWatchPerConn bounds the Watch streams open on one connection,
	// MaxWatchPerIdentity those of one identity (TLS only: plain mode has
	// no identities). 0 means no bound.
	MaxWatchPerConn     int
	MaxWatchPerIdentity int
	// ReapDeadAfter is how long a member that failed or left is still
	// listed (status, metrics) unless it comes back.
	ReapDeadAfter time.Duration
	// HandshakeTimeout bounds a connection's TLS handshake (and HTTP/2
	// preface): one that has not finished by then is closed.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes bounds the connections still handshaking from
	// addresses the server does not know; HandshakeReserve more are kept
	// for addresses of members and of clients that authenticated before.
	// A connection past the bound is closed at once.
	MaxPendingHandshakes int
	HandshakeReserve     int
	// GossipProfile selects memberlist timings: "lan" (default) or "local"
	// (loopback-fast failure detection, for tests and local clusters).
	// cluster.Config.Validate checks it, when New creates the membership.
	GossipProfile string
	// TLS holds the certificate, key and CA files; all or none. With them
	// every connection is mutually authenticated TLS 1.3.
	TLS certs.Files
	// ACLFile holds the access rules; empty means everything is allowed.
	ACLFile string
	// GossipKeyFile holds the key that encrypts and authenticates
	// membership traffic (base64 of 16, 24 or 32 bytes). Required with TLS.
	GossipKeyFile string
	// ShutdownGrace bounds how long Close waits for RPCs to finish.
	ShutdownGrace time.Duration
	// MemoryTrimInterval is how often an idle server checks whether the Go
	// runtime holds freed memory to return to the system; 0 never does.
	MemoryTrimInterval time.Duration
	// HTTPAddr, when set, serves /metrics, /healthz and /readyz on
	// HOST:PORT (port 0 picks one). With TLS, it serves HTTPS with the
	// server's certificate and requires a client certificate of the CA.
	HTTPAddr string
	// HTTPHealthzNoCert lets /healthz answer clients without a
	// certificate, for local probes; the other paths still require one.
	HTTPHealthzNoCert bool
	// JobKinds, when set, returns the kinds of job this server validates
	// and runs (see RegisterJobKind). New calls it once the server's store
	// and write path exist; the kinds may keep s.
	JobKinds func(s *Server) ([]jobs.Kind, error)
	// Logger receives the server's logs (never node data); nil = slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Addr:             "127.0.0.1:12100",
		SyncInterval:     time.Second,
		RejoinInterval:   5 * time.Second,
		BookmarkInterval: 5 * time.Second,
		MaxNodeSize:      limits.MaxNodeSize,
		MaxBatch:         limits.MaxBatch,
		MaxBatchBytes:    limits.MaxBatchBytes,
		ShutdownGrace:    10 * time.Second,

		MaxRequestSize:       limits.MaxRequest,
		MaxTokenOrigins:      limits.MaxTokenOrigins,
		MaxInflightBytes:     256 << 20,
		WatchSendTimeout:     30 * time.Second,
		WatchMemory:          256 << 20,
		WatchPageBytes:       1 << 20,
		MaxWatchPerConn:      1024,
		MaxWatchPerIdentity:  4096,
		ReapDeadAfter:        time.Hour,
		HandshakeTimeout:     5 * time.Second,
		MaxPendingHandshakes: 1024,
		HandshakeReserve:     256,

		MemoryTrimInterval: 10 * time.Second,
	}
}

// Validate reports the first configuration problem, naming the setting.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("server: --data-dir is required")
	}
	if _, _, err := splitHostPort(c.Addr); err != nil {
		return fmt.Errorf("server: --addr %q: %w", c.Addr, err)
	}
	if c.GossipAddr != "" {
		if _, _, err := splitHostPort(c.GossipAddr); err != nil {
			return fmt.Errorf("server: --gossip-addr %q: %w", c.GossipAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("server: --advertise-addr %q: %w", c.AdvertiseAddr, err)
		}
	}
	if c.HTTPAddr != "" {
		if _, _, err := splitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("server: --http-addr %q: %w", c.HTTPAddr, err)
		}
	}
	for _, p := range c.Peers {
		if _, _, err := splitHostPort(p); err != nil {
			return fmt.Errorf("server: --peer %q: %w", p, err)
		}
	}
	if c.SyncInterval <= 0 || c.RejoinInterval <= 0 || c.BookmarkInterval <= 0 {
		return errors.New("server: intervals must be positive")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if c.TLS.Enabled() && c.GossipKeyFile == "" {
		return errors.New("server: --gossip-key-file is required with TLS: membership traffic must be encrypted too (replds cert gossip-key makes one)")
	}
	if c.ACLFile != "" && !c.TLS.Enabled() {
		return errors.New("server: --acls needs --tls-cert, --tls-key and --tls-ca: identities come from client certificates")
	}
	if c.MemoryTrimInterval < 0 {
		return fmt.Errorf("server: --memory-trim-interval %v: must be 0 (off) or positive", c.MemoryTrimInterval)
	}
	if c.MaxNodeSize <= 0 || c.MaxBatch <= 0 || c.MaxBatchBytes <= 0 {
		return errors.New("server: limits must be positive")
	}
	if c.MaxRequestSize < 1<<10 {
		return fmt.Errorf("server: --max-request-size %d: must be at least 1024", c.MaxRequestSize)
	}
	if c.MaxTokenOrigins <= 0 {
		return fmt.Errorf("server: --max-token-origins %d: must be positive", c.MaxTokenOrigins)
	}
	if c.MaxInflightBytes < int64(c.maxMessage()) {
		return fmt.Errorf("server: --max-inflight-bytes %d: must be at least the largest message, %d", c.MaxInflightBytes, c.maxMessage())
	}
	if c.WatchMemory < int64(c.maxMessage()) {
		return fmt.Errorf("server: --watch-memory %d: must be at least the largest message, %d", c.WatchMemory, c.maxMessage())
	}
	if c.WatchSendTimeout <= 0 || c.HandshakeTimeout <= 0 || c.ReapDeadAfter <= 0 {
		return errors.New("server: --watch-send-timeout, --handshake-timeout and --reap-dead-after must be positive")
	}
	if c.WatchPageBytes <= 0 {
		return fmt.Errorf("server: --watch-page-bytes %d: must be positive", c.WatchPageBytes)
	}
	if c.MaxWatchPerConn < 0 || c.MaxWatchPerIdentity < 0 {
		return errors.New("server: --max-watch-per-connection and --max-watch-per-identity must be 0 (no bound) or positive")
	}
	if c.MaxPendingHandshakes <= 0 || c.HandshakeReserve < 0 {
		return errors.New("server: --max-pending-handshakes must be positive and --handshake-reserve not negative")
	}
	return nil
}

// gossipAddr returns the memberlist listen address for c.
func (c *Config) gossipAddr() (string, error) {
	if c.GossipAddr != "" {
		return c.GossipAddr, nil
	}
	host, port, err := splitHostPort(c.Addr)
	if err != nil {
		return "", err
	}
	if port != 0 {
		port++
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, port, nil
}

// maxMessage bounds a gRPC message: a full batch, or the largest node, plus
// room for metadata.
func (c *Config) maxMessage() int {
	return limits.MaxMessage(c.MaxNodeSize, c.MaxBatchBytes)
}
