package store

import (
	"errors"
	"log/slog"
	"time"

	"github.com/replds/replds/limits"
	"github.com/replds/replds/lww"
	"github.com/replds/replds/nodepath"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotFound: no live leaf at the path.
	ErrNotFound = errors.New("store: node not found")
	// ErrInvalidPath wraps every path validation failure (see nodepath.Validate).
	ErrInvalidPath = nodepath.ErrInvalid
	// ErrConflict: the write would make a path both a leaf and a directory.
	ErrConflict = errors.New("store: leaf/directory conflict")
	// ErrIsDir: a non-recursive delete of a directory.
	ErrIsDir = errors.New("store: path is a directory")
	// ErrTooLarge: a node or batch over the configured limits.
	ErrTooLarge = errors.New("store: too large")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrClockSkew: the local clock is too far behind versions already seen.
	ErrClockSkew = errors.New("store: clock skew")
	// ErrInvalidNode: Apply got a node without origin or seq.
	ErrInvalidNode = errors.New("store: invalid node")
)

// MaxClockOffset is how far ahead of the local wall clock a version may be.
// Apply absorbs remote versions into the local clock only up to it, and
// Write refuses with ErrClockSkew rather than stamp a version beyond it.
const MaxClockOffset = time.Minute

// Config configures a Store.
type Config struct {
	// Path is the bbolt file.
	Path string
	// Logger receives the store's logs (never node data). nil = slog.Default().
	Logger *slog.Logger
	// Now is the wall clock; nil = time.Now. Tests substitute a fake.
	Now func() time.Time
	// MaxNodeSize bounds the data of one node; MaxBatch the number of
	// writes in one Write call; MaxBatchBytes their total data.
	MaxNodeSize   int
	MaxBatch      int
	MaxBatchBytes int
	// NoSync disables fsync (benchmarks only; never in production).
	NoSync bool
}

// DefaultConfig returns the production defaults for a store file at path:
// the limits of package limits, which servers share.
func DefaultConfig(path string) Config {
	return Config{
		Path:          path,
		MaxNodeSize:   limits.MaxNodeSize,
		MaxBatch:      limits.MaxBatch,
		MaxBatchBytes: limits.MaxBatchBytes,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("store: config: empty path")
	}
	if c.MaxNodeSize <= 0 || c.MaxBatch <= 0 || c.MaxBatchBytes <= 0 {
		return errors.New("store: config: limits must be positive")
	}
	return nil
}

// Meta is a node's metadata, as kept in memory.
type Meta struct {
	// Version is the HLC value of the write; Origin breaks ties.
	Version uint64
	Origin  uint64
	// Seq is the write's number at its origin.
	Seq     uint64
	Deleted bool
	// Size is len(data).
	Size uint32
}

// Newer reports whether m wins over o under last-write-wins (lww.Stamp):
// higher Version, then higher Origin.
func (m Meta) Newer(o Meta) bool {
	return lww.Stamp{Version: m.Version, Origin: m.Origin}.Newer(lww.Stamp{Version: o.Version, Origin: o.Origin})
}

// Node is a node with its data. Data is owned by the receiver: the store
// never hands out bbolt memory, and never modifies a Data slice it returned
// or received.
type Node struct {
	Path string
	Meta
	Data []byte
}

// Write is one change requested by a client of this server.
type Write struct {
	Path string
	Data []byte
	// Delete removes the leaf at Path; with Recursive, every live leaf under
	// Path (Path included).
	Delete    bool
	Recursive bool
}

// Vector maps origin -> highest contiguous seq reflected in the store.
type Vector map[uint64]uint64

// Covers reports whether v includes the write (origin, seq).
func (v Vector) Covers(origin, seq uint64) bool { return v[origin] >= seq }

// Clone returns a copy.
func (v Vector) Clone() Vector {
	c := make(Vector, len(v))
	for k, s := range v {
		c[k] = s
	}
	return c
}

// Advance tells Apply it may raise the vector entry of Origin to To, provided
// the entry is already at least From (all seqs in (From, To] of Origin that
// are not in the applied batch were superseded at the sender).
type Advance struct {
	Origin, From, To uint64
}

// Event is one batch, delivered to subscribers in commit order. Nodes hold
// only what the batch changed (winners), with data (tombstones without).
// Vector is the store's vector right after the batch. An Apply's event may
// arrive while its commit still runs, before the store's state shows it,
// and again after a failed commit when the sender retries (commitGroup);
// a Write's arrives once it is committed. Events are shared between
// subscribers: read-only.
type Event struct {
	Nodes  []Node
	Vector Vector
}

// Hash is a hash-tree digest.
type Hash [16]byte

// Tree shape: leaves are buckets of hash(path); TreeFanout children per
// internal node; TreeDepth levels below the root.
const (
	TreeFanout = 16
	TreeDepth  = 4
	TreeLeaves = 1 << 16 // TreeFanout^TreeDepth
)

// ScanOptions selects a page of nodes for Store.Scan.
type ScanOptions struct {
	// Prefix bounds the scan to a subtree, on segment boundaries; "/" is
	// the whole tree.
	Prefix string
	// After resumes strictly after this path; "" starts from the beginning.
	After string
	// Keep filters nodes before their data is copied out; nil keeps all.
	// It runs inside a read transaction: it must not block or call the Store.
	Keep func(path string, m Meta) bool
	// MaxNodes bounds the nodes of a page (0 = 1000); MaxBytes their data
	// (0 = 4 MiB). A page always holds at least one node.
	MaxNodes int
	MaxBytes int
}

// Stats counts what a store holds.
type Stats struct {
	// Nodes is the number of live leaves, Bytes the size of their data.
	Nodes uint64
	Bytes uint64
	// Tombstones is the number of deleted nodes still kept.
	Tombstones uint64
}

// VersionLimit returns the highest version a store accepts as current at
// wall clock t (the clock's tolerated offset ahead): an importer refuses
// versions above it, which no honest clock has issued yet.
func VersionLimit(t time.Time) uint64 { return hlcLimit(t) }
