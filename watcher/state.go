package watcher

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"github.com/replds/replds/lww"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/triggers"
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
	bucketRepair  = []byte("repair")
	bucketBlocked = []byte("blocked")

	keySchema = []byte("schema")
	keyPrefix = []byte("prefix")
	keyDir    = []byte("dir")
	keyToken  = []byte("token")
	keyBatch  = []byte("batch")
	keyFull   = []byte("full")
	keySnap   = []byte("snap")
)

// schemaVersion 2 added the file summary of live records and the repair
// and blocked buckets; a state of schema 1 is upgraded in place (its
// records get their summary at the first check).
const schemaVersion = 2

// lockTimeout bounds the wait for the state file's lock: a second pull on
// the same state fails rather than hangs.
const lockTimeout = time.Second

// nodeRec is what the state remembers of a node: the version it applied
// and, for a live leaf written to the mirror, what was written (File).
type nodeRec struct {
	Version uint64
	Origin  uint64
	Deleted bool
	// File summarizes the file the mirror wrote for the leaf; zero when
	// none was written (a tombstone, a shadowed or blocked leaf, a dry run)
	// or the record predates schema 2.
	File fileSum
}

// fileSum is what the check compares a mirrored file with: the stat
// fields first, the content hash only when one of them moved.
type fileSum struct {
	Size  int64
	MTime int64 // modification time, unix ns
	Ino   uint64
	Hash  [sha256.Size]byte
}

// known reports whether s summarizes a written file.
func (s fileSum) known() bool { return s.Hash != [sha256.Size]byte{} }

// sameStat reports whether the stat fields of s and o agree.
func (s fileSum) sameStat(o fileSum) bool {
	return s.Size == o.Size && s.MTime == o.MTime && s.Ino == o.Ino
}

// Encoded record sizes: version, origin, deleted; then, when the file is
// known, size, mtime, inode and hash.
const (
	recBase = 17
	recFile = recBase + 24 + sha256.Size
)

// newer reports whether a beats b under last-write-wins, the servers' rule.
func (a nodeRec) newer(b nodeRec) bool {
	return lww.Stamp{Version: a.Version, Origin: a.Origin}.Newer(lww.Stamp{Version: b.Version, Origin: b.Origin})
}

// same reports whether a and b are the same version of a node.
func (a nodeRec) same(b nodeRec) bool {
	return a.Version == b.Version && a.Origin == b.Origin && a.Deleted == b.Deleted
}

func (a nodeRec) encode() []byte {
	n := recBase
	if a.File.known() {
		n = recFile
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:], a.Version)
	binary.BigEndian.PutUint64(b[8:], a.Origin)
	if a.Deleted {
		b[16] = 1
	}
	if n == recFile {
		binary.BigEndian.PutUint64(b[17:], uint64(a.File.Size))
		binary.BigEndian.PutUint64(b[25:], uint64(a.File.MTime))
		binary.BigEndian.PutUint64(b[33:], a.File.Ino)
		copy(b[41:], a.File.Hash[:])
	}
	return b
}

func decodeNodeRec(b []byte) (nodeRec, error) {
	if len(b) != recBase && len(b) != recFile {
		return nodeRec{}, fmt.Errorf("watcher: corrupt node record of %d bytes", len(b))
	}
	r := nodeRec{
		Version: binary.BigEndian.Uint64(b[0:]),
		Origin:  binary.BigEndian.Uint64(b[8:]),
		Deleted: b[16] == 1,
	}
	if len(b) == recFile {
		r.File.Size = int64(binary.BigEndian.Uint64(b[17:]))
		r.File.MTime = int64(binary.BigEndian.Uint64(b[25:]))
		r.File.Ino = binary.BigEndian.Uint64(b[33:])
		copy(r.File.Hash[:], b[41:])
	}
	return r, nil
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

// ErrSymlink is returned when a file or directory the watcher owns (the
// state file, a snapshot directory) is a symlink: it is never followed, so
// that whoever can write beside the mirror cannot redirect what the pull
// writes, as root, to another file.
var ErrSymlink = errors.New("is a symlink; refusing to follow it (remove it)")

// openNoFollow is os.OpenFile refusing a symlink as the final component:
// the state file is opened with it (its lock is an flock on the same
// file), so a symlink planted in its place is an error, not followed.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s %w", name, ErrSymlink)
	}
	return f, err
}

// openBolt opens the bbolt file at path without following a symlink.
func openBolt(path string, o bolt.Options) (*bolt.DB, error) {
	o.OpenFile = openNoFollow
	return bolt.Open(path, 0o600, &o)
}

// openState opens (creating if needed) the state file and checks that it
// belongs to this prefix and directory. A symlink at path is refused.
func openState(path, prefix, dir string) (*state, error) {
	db, err := openBolt(path, bolt.Options{Timeout: lockTimeout})
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
	return &state{db: db}, nil
}

// openDryState returns a throw-away copy of the state file at path (or an
// empty state if there is none), so that a dry run exercises the real logic
// without touching the real state. The caller removes the returned file.
func openDryState(path, prefix, dir string) (st *state, tmp string, err error) {
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
	if _, err := os.Lstat(path); err == nil {
		src, err := openBolt(path, bolt.Options{ReadOnly: true, Timeout: lockTimeout})
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
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout, NoSync: true})
	if err != nil {
		return nil, "", fmt.Errorf("watcher: open dry-run state: %w", err)
	}
	if err := initState(db, prefix, dir); err != nil {
		db.Close()
		return nil, "", err
	}
	return &state{db: db}, tmp, nil
}

func initState(db *bolt.DB, prefix, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketNodes, bucketShadow, bucketBatch, bucketSeen, bucketPending, bucketHandled, bucketRepair, bucketBlocked} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("watcher: init state: %w", err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if s := getU64(meta, keySchema); s > schemaVersion {
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

// state is the state file. Its methods are the only code that knows the
// bucket layout; each runs in a transaction of its own, except those of a
// stateTx, which share one. It is used by one goroutine.
type state struct {
	db *bolt.DB
}

func (s *state) close() error { return s.db.Close() }

// token returns the persisted resume token (nil if none) and whether a
// full resync is pending.
func (s *state) token() (token *repldspb.Vector, full bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
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

// sealed returns the number of the last sealed snapshot (atomic mode; 0
// if none).
func (s *state) sealed() (n uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bucketMeta), keySnap)
		return nil
	})
	return n, err
}

// setSealed records n as the last sealed snapshot (atomic mode).
func (s *state) setSealed(n uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySnap, u64(n))
	})
}

// knowsAny reports whether the state has a record (live or tombstone) of
// one of paths.
func (s *state) knowsAny(paths ...string) bool {
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		for _, p := range paths {
			if tx.Bucket(bucketNodes).Get([]byte(p)) != nil {
				found = true
			}
		}
		return nil
	})
	return found
}

// startFull begins a complete replay: no path is seen yet, and the full
// resync is recorded as pending, so that a restart before it ends replays
// in full again.
func (s *state) startFull() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyFull, []byte{1}); err != nil {
			return err
		}
		return clearBucket(tx, bucketSeen)
	})
	if err != nil {
		return fmt.Errorf("watcher: state: %w", err)
	}
	return nil
}

// unseen returns the live leaves a full replay did not contain.
func (s *state) unseen() (gone []string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		seen := tx.Bucket(bucketSeen)
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNodeRec(v)
			if err != nil {
				return err
			}
			if !r.Deleted && seen.Get(k) == nil {
				gone = append(gone, string(k))
			}
			return nil
		})
	})
	return gone, err
}

// unchanged reports whether the open batch is empty and token is already
// the resume token: a heartbeat bookmark, with nothing to write.
func (s *state) unchanged(token []byte) bool {
	idle := false
	s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketBatch).Cursor().First()
		idle = k == nil && bytes.Equal(tx.Bucket(bucketMeta).Get(keyToken), token)
		return nil
	})
	return idle
}

// pathChange is the net change of a path in a batch.
type pathChange struct {
	path string
	c    change
}

// seal ends the open batch in one transaction: token (a marshalled Vector)
// becomes the resume token, a full resync ends when endFull is set, and if
// the batch changed anything it is numbered, snap (non-zero) is recorded
// as the sealed snapshot and its changes join the pending set of every
// trigger of list whose path covers them. It returns the number of changed
// paths and the names of the triggers that got some.
func (s *state) seal(token []byte, endFull bool, snap uint64, list []triggers.Trigger) (changed int, touched map[string]bool, err error) {
	touched = map[string]bool{}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyToken, token); err != nil {
			return err
		}
		if endFull {
			if err := clearBucket(tx, bucketSeen); err != nil {
				return err
			}
			if err := meta.Delete(keyFull); err != nil {
				return err
			}
		}
		net, err := takeBatch(tx)
		changed = len(net)
		if err != nil || changed == 0 {
			return err
		}
		if err := meta.Put(keyBatch, u64(getU64(meta, keyBatch)+1)); err != nil {
			return err
		}
		if snap != 0 {
			if err := meta.Put(keySnap, u64(snap)); err != nil {
				return err
			}
		}
		for _, t := range list {
			if err := handOver(tx, t, net, touched); err != nil {
				return err
			}
		}
		return nil
	})
	return changed, touched, err
}

// takeBatch returns the net changes of the open batch and empties it.
func takeBatch(tx *bolt.Tx) ([]pathChange, error) {
	var net []pathChange
	if err := tx.Bucket(bucketBatch).ForEach(func(k, v []byte) error {
		if c := decodeChange(v); !c.none() {
			net = append(net, pathChange{string(k), c})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return net, clearBucket(tx, bucketBatch)
}

// handOver merges the changes of net under t's path into t's pending set,
// noting t in touched if there were some.
func handOver(tx *bolt.Tx, t triggers.Trigger, net []pathChange, touched map[string]bool) error {
	var tb *bolt.Bucket
	for _, e := range net {
		if !nodepath.Under(e.path, t.Path) {
			continue
		}
		if tb == nil {
			var err error
			if tb, err = tx.Bucket(bucketPending).CreateBucketIfNotExists([]byte(t.Name)); err != nil {
				return err
			}
		}
		c := e.c
		if old := tb.Get([]byte(e.path)); old != nil {
			c = decodeChange(old).then(c)
		}
		var err error
		if c.none() {
			err = tb.Delete([]byte(e.path))
		} else {
			err = tb.Put([]byte(e.path), c.encode())
		}
		if err != nil {
			return err
		}
		touched[t.Name] = true
	}
	return nil
}

// pending returns the changes trigger name has not handled yet.
func (s *state) pending(name string) (triggers.Changes, error) {
	c := triggers.Changes{Added: []string{}, Changed: []string{}, Deleted: []string{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketPending).Bucket([]byte(name))
		if tb == nil {
			return nil
		}
		return tb.ForEach(func(k, v []byte) error {
			switch ch := decodeChange(v); {
			case !ch.Before && ch.After:
				c.Added = append(c.Added, string(k))
			case ch.Before && ch.After:
				c.Changed = append(c.Changed, string(k))
			case ch.Before && !ch.After:
				c.Deleted = append(c.Deleted, string(k))
			}
			return nil
		})
	})
	return c, err
}

// setHandled records that trigger name handled everything pending: its
// pending set goes and the current batch number becomes its progress, in
// one transaction.
func (s *state) setHandled(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketPending).DeleteBucket([]byte(name))
		if err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		n := getU64(tx.Bucket(bucketMeta), keyBatch)
		return tx.Bucket(bucketHandled).Put([]byte(name), u64(n))
	})
}

// triggerProgress returns the number of the batch trigger name last
// handled, 0 if none.
func (s *state) triggerProgress(name string) (n uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bucketHandled), []byte(name))
		return nil
	})
	return n, err
}

// pendingTriggers returns the names of the triggers with a pending set.
func (s *state) pendingTriggers() (names []string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}

// forgetTriggers drops the pending sets and progress of triggers names.
func (s *state) forgetTriggers(names []string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range names {
			if err := tx.Bucket(bucketPending).DeleteBucket([]byte(k)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			if err := tx.Bucket(bucketHandled).Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// begin starts a write transaction for a page.
func (s *state) begin() (*stateTx, error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("begin state transaction: %w", err)
	}
	return &stateTx{tx: tx}, nil
}

// stateTx is one write transaction on the state. No bucket is kept across
// calls, and values are copied out: bbolt memory is only valid inside it.
type stateTx struct {
	tx *bolt.Tx
}

func (t *stateTx) commit() error {
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return nil
}

func (t *stateTx) rollback() { t.tx.Rollback() }

// version returns the record of path and whether there is one.
func (t *stateTx) version(path string) (nodeRec, bool, error) {
	v := t.tx.Bucket(bucketNodes).Get([]byte(path))
	if v == nil {
		return nodeRec{}, false, nil
	}
	r, err := decodeNodeRec(v)
	return r, err == nil, err
}

// setVersion records r as the applied version of path.
func (t *stateTx) setVersion(path string, r nodeRec) error {
	return t.tx.Bucket(bucketNodes).Put([]byte(path), r.encode())
}

// shadowed reports whether path is a leaf shadowed by a directory.
func (t *stateTx) shadowed(path string) bool {
	return t.tx.Bucket(bucketShadow).Get([]byte(path)) != nil
}

// shadowData returns a copy of the data of the shadowed leaf path, and
// whether it is shadowed.
func (t *stateTx) shadowData(path string) ([]byte, bool) {
	v := t.tx.Bucket(bucketShadow).Get([]byte(path))
	if v == nil {
		return nil, false
	}
	return bytes.Clone(v[1:]), true
}

// shadow keeps data as the data of path, a leaf shadowed by a directory.
// A marker byte comes first so that an empty leaf is a non-empty value.
func (t *stateTx) shadow(path string, data []byte) error {
	return t.tx.Bucket(bucketShadow).Put([]byte(path), append([]byte{1}, data...))
}

// unshadow forgets path's shadowed data.
func (t *stateTx) unshadow(path string) error {
	return t.tx.Bucket(bucketShadow).Delete([]byte(path))
}

// see notes path as received in the current full replay.
func (t *stateTx) see(path string) error {
	return t.tx.Bucket(bucketSeen).Put([]byte(path), []byte{1})
}

// record notes the change of path's file in the mirror in the open batch,
// merged with earlier changes of the same path in that batch. Before and
// After say whether the file was there: a shadowed leaf is not.
func (t *stateTx) record(path string, c change) error {
	b := t.tx.Bucket(bucketBatch)
	if old := b.Get([]byte(path)); old != nil {
		c = decodeChange(old).then(c)
	}
	return b.Put([]byte(path), c.encode())
}

// hasLiveDescendant reports whether a live node lies strictly under path.
func (t *stateTx) hasLiveDescendant(path string) (bool, error) {
	pfx := []byte(path + "/")
	c := t.tx.Bucket(bucketNodes).Cursor()
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		r, err := decodeNodeRec(v)
		if err != nil {
			return false, err
		}
		if !r.Deleted {
			return true, nil
		}
	}
	return false, nil
}

// clearBucket empties a top-level bucket.
func clearBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}

// eachMirrored calls fn, in path order, with every live leaf the state
// expects as a file in the mirror: neither shadowed nor blocked. fn runs
// inside a read transaction and must not use the state.
func (s *state) eachMirrored(fn func(path string, r nodeRec) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		shadow, blocked := tx.Bucket(bucketShadow), tx.Bucket(bucketBlocked)
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			r, err := decodeNodeRec(v)
			if err != nil || r.Deleted || shadow.Get(k) != nil || blocked.Get(k) != nil {
				return err
			}
			return fn(string(k), r)
		})
	})
}

// recordCheck stores what a check found in one transaction: the updated
// records of files found intact (a new summary), and the drifted paths,
// marked for repair; with drift, a full resync is started, whose replay
// brings their data again.
func (s *state) recordCheck(updates map[string]nodeRec, drifted []string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		for p, r := range updates {
			if err := nodes.Put([]byte(p), r.encode()); err != nil {
				return err
			}
		}
		if len(drifted) == 0 {
			return nil
		}
		repair := tx.Bucket(bucketRepair)
		for _, p := range drifted {
			if err := repair.Put([]byte(p), []byte{1}); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyFull, []byte{1}); err != nil {
			return err
		}
		return clearBucket(tx, bucketSeen)
	})
	if err != nil {
		return fmt.Errorf("watcher: record check: %w", err)
	}
	return nil
}

// unconverged returns the leaves that are not in the mirror as the state
// says they should be: those awaiting repair and those blocked.
func (s *state) unconverged() (repair, blocked []string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRepair).ForEach(func(k, _ []byte) error {
			repair = append(repair, string(k))
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketBlocked).ForEach(func(k, _ []byte) error {
			blocked = append(blocked, string(k))
			return nil
		})
	})
	return repair, blocked, err
}

// repairing reports whether path awaits a repair: its file drifted and
// must be written again, even at the version already applied.
func (t *stateTx) repairing(path string) bool {
	return t.tx.Bucket(bucketRepair).Get([]byte(path)) != nil
}

// repaired forgets path's repair mark.
func (t *stateTx) repaired(path string) error {
	return t.tx.Bucket(bucketRepair).Delete([]byte(path))
}

// blockedData returns a copy of the data of the blocked leaf path (one a
// local directory kept from being written), and whether it is blocked.
func (t *stateTx) blockedData(path string) ([]byte, bool) {
	v := t.tx.Bucket(bucketBlocked).Get([]byte(path))
	if v == nil {
		return nil, false
	}
	return bytes.Clone(v[1:]), true
}

// block keeps data as the data of path, a leaf that could not be written,
// to be written by a later batch. A marker byte comes first, as in shadow.
func (t *stateTx) block(path string, data []byte) error {
	return t.tx.Bucket(bucketBlocked).Put([]byte(path), append([]byte{1}, data...))
}

// unblock forgets path's blocked data.
func (t *stateTx) unblock(path string) error {
	return t.tx.Bucket(bucketBlocked).Delete([]byte(path))
}

// blocked reports whether path is a blocked leaf.
func (t *stateTx) blocked(path string) bool {
	return t.tx.Bucket(bucketBlocked).Get([]byte(path)) != nil
}

// blockedPaths returns the blocked leaves.
func (s *state) blockedPaths() (out []string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlocked).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}
