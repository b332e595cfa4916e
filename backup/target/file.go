package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// tmpPrefix marks files being written; List never shows them and a
// crashed Put's leftovers are recognisable by it.
const tmpPrefix = ".tmp-"

// Dir is a Target in a local directory: each object a file, each key
// segment a directory. Writes go to a temp file in the final directory,
// are fsynced, then renamed (or linked, for PutIfAbsent) into place, and
// the directory is fsynced.
type Dir struct {
	root string
}

var _ Target = (*Dir)(nil)

// OpenDir returns the target rooted at dir, creating it (0700) if missing.
func OpenDir(dir string) (*Dir, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("target: directory %q: want an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	return &Dir{root: filepath.Clean(dir)}, nil
}

// String returns the target's URL.
func (d *Dir) String() string { return "file://" + d.root }

func (d *Dir) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Put implements Target.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader) error {
	return d.put(ctx, key, r, os.Rename)
}

// PutIfAbsent implements Target: link(2) fails when the name exists, so the
// check and the creation are one step.
func (d *Dir) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	err := d.put(ctx, key, r, func(tmp, final string) error {
		if err := os.Link(tmp, final); err != nil {
			return err
		}
		return os.Remove(tmp)
	})
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, key)
	}
	return err
}

func (d *Dir) put(ctx context.Context, key string, r io.Reader, place func(tmp, final string) error) (err error) {
	final, err := d.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	if err := place(tmp, final); err != nil {
		return fmt.Errorf("target: put %s: %w", key, err)
	}
	return syncDir(dir)
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("target: sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("target: sync %s: %w", dir, err)
	}
	return nil
}

// Get implements Target.
func (d *Dir) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, key)
	}
	if err != nil {
		return nil, fmt.Errorf("target: get %s: %w", key, err)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("target: get %s: %w", key, err)
		}
	}
	if n < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, n), f}, nil
}

// Stat implements Target.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	p, err := d.path(key)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotExist, key)
	}
	if err != nil {
		return Info{}, fmt.Errorf("target: stat %s: %w", key, err)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Target. It walks only the directory the prefix's last
// "/" names, and sorts what it finds by key.
func (d *Dir) List(ctx context.Context, prefix string, fn func(Info) error) error {
	start := d.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if err := ValidateKey(prefix[:i]); err != nil {
			return err
		}
		start = filepath.Join(d.root, filepath.FromSlash(prefix[:i]))
	}
	var infos []Info
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.IsDir() || !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		infos = append(infos, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("target: list %q: %w", prefix, err)
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Target. Directories left empty are removed, up to the
// root.
func (d *Dir) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("target: delete %s: %w", key, err)
	}
	for dir := filepath.Dir(p); dir != d.root && strings.HasPrefix(dir, d.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break // not empty, or gone
		}
	}
	return nil
}
