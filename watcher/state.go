package watcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	repldspb "replds/proto"
	"replds/store"
)

// Layout of the state file (see doc.go for what each bucket means).
var (
	bucketMeta    = []byte("meta")
	bucketNodes   = []byte("nodes")
	bucketShadow  = []byte("shadow")
	bucketBatch   = []byte("batch")
	bucketSeen    = []byte("seen")
	bucketPending = []byte("pending")
	bucketHandled = []byte("handled")

	keySchema = []byte("schema")
	keyPrefix = []byte("prefix")
	keyDir    = []byte("dir")
	keyToken  = []byte("token")
	keyBatch  = []byte("batch")
	keyFull   = []byte("full")
	keySnap   = []byte("snap")
)

const schemaVersion = 1

// lockTimeout bounds the wait for the state file's lock: a second pull on
// the same state fails rather than hangs.
const lockTimeout = time.Second

// nodeRec is what the state remembers of a node: the version it applied.
type nodeRec struct {
	Version uint64
	Origin  uint64
	Deleted bool
}

// newer reports whether a beats b under last-write-wins, the servers' rule.
func (a nodeRec) newer(b nodeRec) bool {
	return store.Meta{Version: a.Version, Origin: a.Origin}.Newer(store.Meta{Version: b.Version, Origin: b.Origin})
}

func (a nodeRec) encode() []byte {
	b := make([]byte, 17)
	binary.BigEndian.PutUint64(b[0:], a.Version)
	binary.BigEndian.PutUint64(b[8:], a.Origin)
	if a.Deleted {
		b[16] = 1
	}
	return b
}

func decodeNodeRec(b []byte) (nodeRec, error) {
	if len(b) != 17 {
		return nodeRec{}, fmt.Errorf("watcher: corrupt node record of %d bytes", len(b))
	}
	return nodeRec{
		Version: binary.BigEndian.Uint64(b[0:]),
		Origin:  binary.BigEndian.Uint64(b[8:]),
		Deleted: b[16] == 1,
	}, nil
}

// change is the net effect of one or more updates of a path: whether a
// live leaf existed before the first and after the last.
type change struct {
	Before, After bool
}

// then merges c with a later change of the same path.
func (c change) then(later change) change { return change{Before: c.Before, After: later.After} }

// none reports whether the change has no net effect.
func (c change) none() bool { return !c.Before && !c.After }

func (c change) encode() []byte {
	b := make([]byte, 2)
	if c.Before {
		b[0] = 1
	}
	if c.After {
		b[1] = 1
	}
	return b
}

func decodeChange(b []byte) change {
	return change{Before: len(b) > 0 && b[0] == 1, After: len(b) > 1 && b[1] == 1}
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// openState opens (creating if needed) the state file and checks that it
// belongs to this prefix and directory.
func openState(path, prefix, dir string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("watcher: state file %s is locked by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("watcher: open state: %w", err)
	}
	if err := initState(db, prefix, dir); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openDryState returns a throw-away copy of the state file at path (or an
// empty state if there is none), so that a dry run exercises the real logic
// without touching the real state. The caller removes the returned file.
func openDryState(path, prefix, dir string) (db *bolt.DB, tmp string, err error) {
	f, err := os.CreateTemp("", "replds-dry-run-*.state")
	if err != nil {
		return nil, "", fmt.Errorf("watcher: dry-run state: %w", err)
	}
	tmp = f.Name()
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := os.Stat(path); err == nil {
		src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, "", fmt.Errorf("watcher: state file %s is locked by a running pull; stop it for a dry run", path)
		}
		if err != nil {
			return nil, "", fmt.Errorf("watcher: open state read-only: %w", err)
		}
		err = src.View(func(tx *bolt.Tx) error { return tx.CopyFile(tmp, 0o600) })
		src.Close()
		if err != nil {
			return nil, "", fmt.Errorf("watcher: copy state: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("watcher: state: %w", err)
	} else {
		os.Remove(tmp) // bbolt wants a missing or valid file
	}
	db, err = bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout, NoSync: true})
	if err != nil {
		return nil, "", fmt.Errorf("watcher: open dry-run state: %w", err)
	}
	if err := initState(db, prefix, dir); err != nil {
		db.Close()
		return nil, "", err
	}
	return db, tmp, nil
}

func initState(db *bolt.DB, prefix, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketNodes, bucketShadow, bucketBatch, bucketSeen, bucketPending, bucketHandled} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("watcher: init state: %w", err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if s := getU64(meta, keySchema); s != 0 && s != schemaVersion {
			return fmt.Errorf("watcher: state file has schema %d, this replds knows %d", s, schemaVersion)
		}
		if p := meta.Get(keyPrefix); p != nil && string(p) != prefix {
			return fmt.Errorf("watcher: state file is for prefix %q, not %q (use another --state-file)", p, prefix)
		}
		if d := meta.Get(keyDir); d != nil && string(d) != dir {
			return fmt.Errorf("watcher: state file is for directory %s, not %s (use another --state-file)", d, dir)
		}
		if err := meta.Put(keySchema, u64(schemaVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyPrefix, []byte(prefix)); err != nil {
			return err
		}
		return meta.Put(keyDir, []byte(dir))
	})
}

// readToken returns the persisted resume token (nil if none) and whether a
// full resync is pending after a reset.
func readToken(db *bolt.DB) (token *repldspb.Vector, full bool, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		full = meta.Get(keyFull) != nil
		raw := meta.Get(keyToken)
		if raw == nil {
			return nil
		}
		token = &repldspb.Vector{}
		if err := proto.Unmarshal(raw, token); err != nil {
			return fmt.Errorf("watcher: corrupt resume token: %w", err)
		}
		return nil
	})
	return token, full, err
}

// readSealed returns the number of the last sealed snapshot (atomic mode;
// 0 if none).
func readSealed(db *bolt.DB) (n uint64, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bucketMeta), keySnap)
		return nil
	})
	return n, err
}

// writeSealed records n as the last sealed snapshot (atomic mode).
func writeSealed(db *bolt.DB, n uint64) error {
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySnap, u64(n))
	})
}

// clearBucket empties a top-level bucket.
func clearBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}
