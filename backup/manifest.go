package backup

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/replds/replds/store"
)

// FormatVersion is the format this package writes, in manifests and node
// file headers. Readers refuse a higher one.
const FormatVersion = 1

// Kinds of backup.
const (
	// KindFull is a snapshot of the prefix.
	KindFull = "full"
	// KindIncremental holds the winners since its parent's vector.
	KindIncremental = "incremental"
)

// MaxNodeData bounds the data of one record; readers treat a larger length
// as corruption rather than allocate it.
const MaxNodeData = 1 << 30

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrExists: Commit found a manifest already under the backup's ID.
	ErrExists = errors.New("backup: manifest exists")
	// ErrNotFound: a backup, a chain member or a node file is missing.
	ErrNotFound = errors.New("backup: not found")
	// ErrCorrupt: stored bytes do not match their manifest (size,
	// checksum), do not decode, break the order of a full backup, or
	// rebuild to a different content root.
	ErrCorrupt = errors.New("backup: corrupt")
	// ErrNoIdentity: a backup is encrypted and no identity was given, or
	// none of those given matches its recipients.
	ErrNoIdentity = errors.New("backup: no matching identity")
	// ErrInvalid: bad input to a function of this package (options,
	// arguments, a node out of order).
	ErrInvalid = errors.New("backup: invalid")
)

// Manifest describes one complete backup: it is JOB/ID/manifest.json,
// written last, so that a backup without one is incomplete.
type Manifest struct {
	// Format is FormatVersion of the writer.
	Format int `json:"format"`
	// Job is the backup job's name; ID the backup's, unique in the job
	// and sorting by time (NewID).
	Job string `json:"job"`
	ID  string `json:"id"`
	// Kind is KindFull or KindIncremental.
	Kind string `json:"kind"`
	// Parent is, for an incremental, the ID of the backup it follows (a
	// full or an incremental).
	Parent string `json:"parent,omitempty"`
	// Prefix is the subtree backed up; Exclude the prefixes left out of it.
	Prefix  string   `json:"prefix"`
	Exclude []string `json:"exclude,omitempty"`
	// Time is when the backup was started (UTC).
	Time time.Time `json:"time"`
	// Vector is the store vector the backup reflects: origin as 16 hex
	// digits -> seq (VectorOf, ToVector).
	Vector map[string]uint64 `json:"vector"`
	// Root is the hex content root (Root) of the live nodes of the state
	// the backup reflects.
	Root string `json:"root"`
	// Nodes counts the records in the backup's files, Tombstones included.
	Nodes      uint64 `json:"nodes"`
	Tombstones uint64 `json:"tombstones"`
	// Bytes is the node data in the backup, uncompressed; Stored the size
	// of its files in the target.
	Bytes  uint64 `json:"bytes"`
	Stored uint64 `json:"stored"`
	// Files are the node files, in the order written.
	Files []File `json:"files"`
	// Encrypted tells whether the files are age-encrypted, to the
	// recipients whose fingerprints (Fingerprint) are in Recipients.
	Encrypted  bool     `json:"encrypted"`
	Recipients []string `json:"recipients,omitempty"`
	// Runner is the server that wrote the backup; Note free text.
	Runner string `json:"runner,omitempty"`
	Note   string `json:"note,omitempty"`
	// Verified is the last verification recorded for the backup
	// (JOB/ID/verify.json), attached by List; never part of manifest.json.
	Verified *Verification `json:"verified,omitempty"`
}

// File is one node file of a backup.
type File struct {
	// Name is the file's name in the backup's directory
	// ("nodes-000001.zst").
	Name string `json:"name"`
	// Size and SHA256 (hex) are those of the bytes stored in the target.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Nodes counts the file's records.
	Nodes uint64 `json:"nodes"`
	// First and Last are the smallest and largest paths of its records,
	// so that a reader of one subtree skips the files that hold none of
	// it (empty in backups made before they were recorded: read).
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
}

// outside reports whether f holds no record at or under prefix ("" or
// "/": the whole tree), as far as its First and Last say.
func (f File) outside(prefix string) bool {
	if prefix == "" || prefix == "/" || f.First == "" {
		return false
	}
	// The subtree's paths are prefix and prefix+"/...", all within
	// [prefix, prefix+"0"), '0' following '/'.
	return f.Last < prefix || f.First >= prefix+"0"
}

// Dir returns the backup's directory in the target, "JOB/ID".
func (m Manifest) Dir() string { return m.Job + "/" + m.ID }

// Key returns the target key of a file of the backup.
func (m Manifest) Key(name string) string { return m.Dir() + "/" + name }

// Names of the objects of a backup directory.
const (
	manifestName = "manifest.json"
	verifyName   = "verify.json"
)

// validate checks what readers rely on in a manifest read from a target.
func (m *Manifest) validate() error {
	switch {
	case m.Format < 1 || m.Format > FormatVersion:
		return fmt.Errorf("format %d (this version reads 1 to %d)", m.Format, FormatVersion)
	case m.Kind != KindFull && m.Kind != KindIncremental:
		return fmt.Errorf("kind %q", m.Kind)
	case m.Kind == KindIncremental && m.Parent == "":
		return errors.New("incremental without parent")
	case m.Kind == KindFull && m.Parent != "":
		return errors.New("full with a parent")
	case m.Encrypted && len(m.Recipients) == 0:
		return errors.New("encrypted without recipients")
	}
	if _, err := ParseID(m.ID); err != nil {
		return fmt.Errorf("id %q", m.ID)
	}
	for i, f := range m.Files {
		if f.Name != fileName(i+1, m.Encrypted) {
			return fmt.Errorf("file %d named %q, want %q", i+1, f.Name, fileName(i+1, m.Encrypted))
		}
	}
	return nil
}

// fileName is the name of the n-th node file (from 1).
func fileName(n int, encrypted bool) string {
	name := fmt.Sprintf("nodes-%06d.zst", n)
	if encrypted {
		name += ".age"
	}
	return name
}

// idLayout is the time part of an ID; the random suffix follows a "-".
const idLayout = "20060102T150405.000Z"

// NewID returns a new backup ID for a backup started at t: its UTC time to
// the millisecond and 4 random hex digits, "20261202T174501.123Z-3f9a".
// IDs sort by time (to the millisecond).
func NewID(t time.Time) string {
	var b [2]byte
	rand.Read(b[:])
	return t.UTC().Format(idLayout) + "-" + hex.EncodeToString(b[:])
}

// ParseID returns the time an ID (NewID) was made for.
func ParseID(id string) (time.Time, error) {
	ts, suffix, ok := strings.Cut(id, "-")
	if !ok || suffix == "" || len(suffix) > 16 || strings.Trim(suffix, "0123456789abcdef") != "" {
		return time.Time{}, fmt.Errorf("%w: backup id %q: want UTC time and hex suffix, like 20261202T174501.123Z-3f9a", ErrInvalid, id)
	}
	t, err := time.Parse(idLayout, ts)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: backup id %q: want UTC time and hex suffix, like 20261202T174501.123Z-3f9a", ErrInvalid, id)
	}
	return t, nil
}

// VectorOf returns v in its manifest form: origin as 16 hex digits -> seq.
func VectorOf(v store.Vector) map[string]uint64 {
	m := make(map[string]uint64, len(v))
	for origin, seq := range v {
		m[fmt.Sprintf("%016x", origin)] = seq
	}
	return m
}

// ToVector converts a manifest's vector back into a store.Vector.
func ToVector(m map[string]uint64) (store.Vector, error) {
	v := make(store.Vector, len(m))
	for k, seq := range m {
		origin, err := strconv.ParseUint(k, 16, 64)
		if err != nil || len(k) != 16 {
			return nil, fmt.Errorf("%w: vector origin %q: want 16 hex digits", ErrInvalid, k)
		}
		v[origin] = seq
	}
	return v, nil
}

// Fingerprint identifies an age recipient in a manifest without its text:
// "sha256:" and the first 16 hex digits of the SHA-256 of the recipient
// string ("age1...").
func Fingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

func marshalJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only our own plain structs are marshalled.
		panic(fmt.Sprintf("backup: marshal %T: %v", v, err))
	}
	return append(b, '\n')
}
