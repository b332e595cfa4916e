package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/jobs"
	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// DefaultFileBytes is the uncompressed size after which a node file is
// closed and the next one begun.
const DefaultFileBytes = 64 << 20

// WriterOptions configures a Writer.
type WriterOptions struct {
	// Job is the job's name (jobs.ValidateName); ID the backup's, "" for
	// NewID(Now()). An ID must be new: nothing may exist under JOB/ID/.
	Job, ID string
	// Kind is KindFull or KindIncremental; Parent, for an incremental
	// only, the ID of the backup it follows.
	Kind, Parent string
	// Prefix is the subtree backed up ("/" for all); Exclude the prefixes
	// under it left out. Add refuses nodes outside Prefix or inside Exclude.
	Prefix  string
	Exclude []string
	// Recipients are age X25519 recipients ("age1..."); none means the
	// files are not encrypted.
	Recipients []string
	// FileBytes bounds the uncompressed records of a node file (0 =
	// DefaultFileBytes); a file holds at least one record.
	FileBytes int
	// Runner names the server writing the backup, for the manifest.
	Runner string
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Writer writes one backup: node files streamed to the target while nodes
// are added, then the manifest on Commit. It is used by one goroutine. It
// holds at most one node file's compression and encryption buffers; each
// file is uploaded by a goroutine the Writer owns and waits for. Every
// Writer must end with Commit or Abort, or its upload stays blocked.
type Writer struct {
	ctx          context.Context
	t            target.Target
	opts         WriterOptions
	id           string
	start        time.Time
	recipients   []age.Recipient
	fingerprints []string
	zw           *zstd.Encoder

	cur   *fileWriter
	files []File
	// keys of every node file begun, for Abort.
	keys []string

	nodes, tombstones, bytes uint64
	last                     string
	buf                      []byte

	// err is sticky: once set, Add and Commit return it.
	err error
	// committing is set once the manifest write was attempted; committed
	// once it succeeded.
	committing, committed, aborted bool
}

// fileWriter is one node file being uploaded.
type fileWriter struct {
	key   string
	name  string
	pw    *io.PipeWriter
	sum   *digest        // of the bytes stored
	enc   io.WriteCloser // age encryption, or nil
	raw   int            // uncompressed bytes written
	nodes uint64
	done  chan error // the upload's result
	// first and last are the smallest and largest paths of the records.
	first, last string
}

// digest hashes and counts the bytes of a stored file written through it.
type digest struct {
	h hash.Hash
	n int64
}

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *digest) sha256() string { return hex.EncodeToString(d.h.Sum(nil)) }

// NewWriter validates opts and returns a Writer for a new backup in t. ctx
// bounds the Writer's whole life: the uploads of its node files run under
// it. It fails with ErrExists when objects already exist under JOB/ID/.
func NewWriter(ctx context.Context, t target.Target, opts WriterOptions) (*Writer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FileBytes < 0 {
		return nil, fmt.Errorf("%w: file bytes %d", ErrInvalid, opts.FileBytes)
	}
	if opts.FileBytes == 0 {
		opts.FileBytes = DefaultFileBytes
	}
	if err := jobs.ValidateName(opts.Job); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch opts.Kind {
	case KindFull:
		if opts.Parent != "" {
			return nil, fmt.Errorf("%w: a full backup has no parent (got %q)", ErrInvalid, opts.Parent)
		}
	case KindIncremental:
		if _, err := ParseID(opts.Parent); err != nil {
			return nil, fmt.Errorf("%w: incremental parent %q: want a backup ID", ErrInvalid, opts.Parent)
		}
	default:
		return nil, fmt.Errorf("%w: kind %q: want %q or %q", ErrInvalid, opts.Kind, KindFull, KindIncremental)
	}
	if err := nodepath.ValidatePrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("%w: prefix: %v", ErrInvalid, err)
	}
	for _, e := range opts.Exclude {
		if err := nodepath.Validate(e); err != nil {
			return nil, fmt.Errorf("%w: exclude: %v", ErrInvalid, err)
		}
	}
	w := &Writer{ctx: ctx, t: t, opts: opts, start: opts.Now().UTC()}
	for i, r := range opts.Recipients {
		rec, err := parseRecipient(i, r)
		if err != nil {
			return nil, err
		}
		w.recipients = append(w.recipients, rec)
		w.fingerprints = append(w.fingerprints, Fingerprint(r))
	}
	w.id = opts.ID
	if w.id == "" {
		w.id = NewID(w.start)
	}
	if _, err := ParseID(w.id); err != nil {
		return nil, err
	}
	dir := opts.Job + "/" + w.id + "/"
	err := t.List(ctx, dir, func(target.Info) error { return ErrExists })
	if errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("backup: %s: objects exist: %w", strings.TrimSuffix(dir, "/"), ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", dir, err)
	}
	// One encoder, reset for each file; concurrency 1 keeps its buffers to
	// one stream's.
	w.zw, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("backup: zstd: %w", err)
	}
	return w, nil
}

func parseRecipient(i int, r string) (age.Recipient, error) {
	if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(r)), "AGE-SECRET-KEY-") {
		// Never repeat a secret key in a message.
		return nil, fmt.Errorf("%w: recipient %d is a secret key; give its public key (age1...)", ErrInvalid, i+1)
	}
	rec, err := age.ParseX25519Recipient(r)
	if err != nil {
		shown := r
		if len(shown) > 100 {
			shown = shown[:100] + "..."
		}
		return nil, fmt.Errorf("%w: recipient %d %q: %v", ErrInvalid, i+1, shown, err)
	}
	return rec, nil
}

// ID returns the backup's ID.
func (w *Writer) ID() string { return w.id }

// Add appends a node (a tombstone when n.Deleted) to the backup, starting a
// node file when needed. A full backup's nodes must come in strictly
// increasing path order. Nodes must lie under the prefix and outside the
// excluded prefixes. Add blocks while the target takes the previous
// output. After an error the Writer is failed: call Abort.
func (w *Writer) Add(n store.Node) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.check(&n); err != nil {
		// Bad input changes nothing: the Writer stays usable.
		return err
	}
	if w.cur == nil {
		if err := w.startFile(); err != nil {
			return w.fail(err)
		}
	}
	f := w.cur
	w.buf = appendRecordHead(w.buf[:0], &n)
	if _, err := w.zw.Write(w.buf); err != nil {
		return w.fail(w.uploadErr(f, err))
	}
	if _, err := w.zw.Write(n.Data); err != nil {
		return w.fail(w.uploadErr(f, err))
	}
	f.raw += len(w.buf) + len(n.Data)
	if f.nodes == 0 || n.Path < f.first {
		f.first = n.Path
	}
	if f.nodes == 0 || n.Path > f.last {
		f.last = n.Path
	}
	f.nodes++
	w.nodes++
	if n.Deleted {
		w.tombstones++
	}
	w.bytes += uint64(len(n.Data))
	w.last = n.Path
	if f.raw >= w.opts.FileBytes {
		if err := w.closeFile(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

func (w *Writer) usable() error {
	switch {
	case w.err != nil:
		return w.err
	case w.committed:
		return fmt.Errorf("%w: backup %s/%s is committed", ErrInvalid, w.opts.Job, w.id)
	case w.aborted:
		return fmt.Errorf("%w: backup %s/%s was aborted", ErrInvalid, w.opts.Job, w.id)
	}
	return nil
}

func (w *Writer) check(n *store.Node) error {
	if err := nodepath.Validate(n.Path); err != nil {
		return fmt.Errorf("%w: node: %v", ErrInvalid, err)
	}
	if !nodepath.Under(n.Path, w.opts.Prefix) {
		return fmt.Errorf("%w: node %s is not under prefix %s", ErrInvalid, nodepath.Quote(n.Path), w.opts.Prefix)
	}
	for _, e := range w.opts.Exclude {
		if nodepath.Under(n.Path, e) {
			return fmt.Errorf("%w: node %s is under excluded prefix %s", ErrInvalid, nodepath.Quote(n.Path), e)
		}
	}
	if len(n.Data) > MaxNodeData {
		return fmt.Errorf("%w: node %s: data of %d bytes (at most %d)", ErrInvalid, nodepath.Quote(n.Path), len(n.Data), MaxNodeData)
	}
	if w.opts.Kind == KindFull && w.nodes > 0 && n.Path <= w.last {
		return fmt.Errorf("%w: full backup: node %s not after %s (a full is written in path order)", ErrInvalid, nodepath.Quote(n.Path), nodepath.Quote(w.last))
	}
	return nil
}

func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

// startFile begins the next node file: its upload reads from a pipe the
// encoder writes into.
func (w *Writer) startFile() error {
	name := fileName(len(w.files)+1, len(w.recipients) > 0)
	key := w.opts.Job + "/" + w.id + "/" + name
	pr, pw := io.Pipe()
	f := &fileWriter{key: key, name: name, pw: pw, done: make(chan error, 1)}
	f.sum = newDigest()
	w.keys = append(w.keys, key)
	go func() {
		err := w.t.Put(w.ctx, key, pr)
		// Unblock the encoder if the upload stopped before reading all.
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errors.New("upload ended"))
		}
		f.done <- err
	}()
	var out io.Writer = io.MultiWriter(pw, f.sum)
	if len(w.recipients) > 0 {
		enc, err := age.Encrypt(out, w.recipients...)
		if err != nil {
			pw.CloseWithError(err)
			<-f.done
			return fmt.Errorf("backup: %s: encrypt: %w", key, err)
		}
		f.enc, out = enc, enc
	}
	w.zw.Reset(out)
	w.cur = f
	if _, err := w.zw.Write(fileHeader()); err != nil {
		return w.uploadErr(f, err)
	}
	f.raw = len(magic) + 1
	return nil
}

// uploadErr stops f's upload after a write into it failed, and returns the
// upload's error, which says why (the pipe only repeats it).
func (w *Writer) uploadErr(f *fileWriter, err error) error {
	f.pw.CloseWithError(err)
	uerr := <-f.done
	f.done <- uerr // keep it for a later wait
	w.cur = nil
	return fmt.Errorf("backup: store %s: %w", f.key, uerr)
}

// closeFile ends the current file, waits for its upload and records it.
func (w *Writer) closeFile() error {
	f := w.cur
	w.buf = appendTrailer(w.buf[:0], f.nodes)
	if _, err := w.zw.Write(w.buf); err != nil {
		return w.uploadErr(f, err)
	}
	if err := w.zw.Close(); err != nil {
		return w.uploadErr(f, err)
	}
	if f.enc != nil {
		if err := f.enc.Close(); err != nil {
			return w.uploadErr(f, err)
		}
	}
	f.pw.Close()
	w.cur = nil
	if err := <-f.done; err != nil {
		return fmt.Errorf("backup: store %s: %w", f.key, err)
	}
	w.files = append(w.files, File{
		Name:   f.name,
		Size:   f.sum.n,
		SHA256: f.sum.sha256(),
		Nodes:  f.nodes,
		First:  f.first,
		Last:   f.last,
	})
	return nil
}

// Commit ends the last node file and writes the manifest, with vec the
// store vector the backup reflects, root the content root (Root.Sum) of the
// state at vec, and note free text. It first checks that every node file
// is still in the target with its size (ErrNotFound if one is gone). The
// manifest is written with PutIfAbsent: ErrExists if one is there
// already. It returns the manifest written. After an error, call Abort.
func (w *Writer) Commit(ctx context.Context, vec store.Vector, root string, note string) (Manifest, error) {
	if err := w.usable(); err != nil {
		return Manifest{}, err
	}
	if b, err := hex.DecodeString(root); err != nil || len(b) != sha256.Size {
		return Manifest{}, fmt.Errorf("%w: root %q: want %d hex digits", ErrInvalid, root, 2*sha256.Size)
	}
	if w.cur != nil {
		if err := w.closeFile(); err != nil {
			return Manifest{}, w.fail(err)
		}
	}
	m := Manifest{
		Format:     FormatVersion,
		Job:        w.opts.Job,
		ID:         w.id,
		Kind:       w.opts.Kind,
		Parent:     w.opts.Parent,
		Prefix:     w.opts.Prefix,
		Exclude:    w.opts.Exclude,
		Time:       w.start,
		Vector:     VectorOf(vec),
		Root:       root,
		Nodes:      w.nodes,
		Tombstones: w.tombstones,
		Bytes:      w.bytes,
		Files:      w.files,
		Encrypted:  len(w.recipients) > 0,
		Recipients: w.fingerprints,
		Runner:     w.opts.Runner,
		Note:       note,
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	for _, f := range w.files {
		m.Stored += uint64(f.Size)
	}
	// A leftover's files may have been pruned while a long run went on
	// (Retain's grace): never commit a manifest whose files are gone.
	for _, f := range m.Files {
		key := m.Key(f.Name)
		info, err := w.t.Stat(ctx, key)
		if errors.Is(err, target.ErrNotExist) {
			return Manifest{}, w.fail(fmt.Errorf("backup: %s: gone before commit: %w", key, ErrNotFound))
		}
		if err != nil {
			return Manifest{}, w.fail(fmt.Errorf("backup: stat %s: %w", key, err))
		}
		if info.Size != f.Size {
			return Manifest{}, w.fail(fmt.Errorf("backup: %s: size %d, wrote %d: %w", key, info.Size, f.Size, ErrCorrupt))
		}
	}
	w.committing = true
	key := m.Key(manifestName)
	err := w.t.PutIfAbsent(ctx, key, bytes.NewReader(marshalJSON(m)))
	if errors.Is(err, target.ErrExists) {
		return Manifest{}, w.fail(fmt.Errorf("backup: %s: %w", key, ErrExists))
	}
	if err != nil {
		return Manifest{}, w.fail(fmt.Errorf("backup: store %s: %w", key, err))
	}
	w.committed = true
	return m, nil
}

// Abort stops the backup and deletes every node file it wrote, best effort
// (a leftover is an incomplete backup, which Retain removes later). It
// refuses to delete anything once the manifest is stored, and returns an
// error then. Abort waits for the upload in progress to end.
func (w *Writer) Abort(ctx context.Context) error {
	if w.committed {
		return fmt.Errorf("%w: backup %s/%s is committed", ErrInvalid, w.opts.Job, w.id)
	}
	if w.aborted {
		return nil
	}
	w.aborted = true
	if f := w.cur; f != nil {
		f.pw.CloseWithError(errors.New("aborted"))
		w.zw.Close() // frees the encoder; its write fails on the closed pipe
		<-f.done
		w.cur = nil
	}
	if w.committing {
		// A failed manifest write may still have stored it (or another
		// writer did): then the files are part of a complete backup.
		key := w.opts.Job + "/" + w.id + "/" + manifestName
		if _, err := w.t.Stat(ctx, key); err == nil {
			return fmt.Errorf("backup: abort: %s exists; files kept: %w", key, ErrExists)
		}
	}
	var errs []error
	for _, key := range w.keys {
		if err := w.t.Delete(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("backup: abort: %w", err)
	}
	return nil
}
