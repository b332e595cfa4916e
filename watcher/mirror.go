package watcher

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"syscall"
)

// tmpPrefix starts the name of every temporary file the mirror creates.
const tmpPrefix = ".replds-tmp-"

// maxShadowRead bounds what is read back from a leaf about to be shadowed.
const maxShadowRead = 64 << 20

// errDirInTheWay: a directory that is not empty sits where a leaf goes.
var errDirInTheWay = errors.New("watcher: a non-empty directory is in the way")

// mirror does the file operations under the store directory. Every name is
// a slash-separated path relative to the directory ("." is the directory).
// All operations go through an os.Root, so nothing outside the directory is
// ever touched, and each one refuses to go through a symlink: parents are
// checked segment by segment with Lstat, final components are created with
// O_EXCL, replaced by rename or removed, none of which follows a link.
//
// In dry-run mode (root == nil or dry set) nothing is written; reads still
// look at the directory if it exists. A mirror is used by one goroutine.
type mirror struct {
	root     *os.Root
	dry      bool
	fileMode os.FileMode
	dirMode  os.FileMode
	log      *slog.Logger
}

// dirty collects the directories whose entries changed and must be fsynced
// before the state records the change.
type dirty map[string]struct{}

func (d dirty) add(dir string) { d[dir] = struct{}{} }

// lstat is root.Lstat that reports a missing directory as not existing.
func (m *mirror) lstat(name string) (fs.FileInfo, error) {
	if m.root == nil {
		return nil, fs.ErrNotExist
	}
	return m.root.Lstat(name)
}

// ensureDir makes sure dir and its parents are real directories, creating
// them with dirMode. A symlink or file in the way is removed (the store
// directory belongs to the mirror), never followed.
func (m *mirror) ensureDir(dir string, d dirty) error {
	if dir == "." || m.dry {
		return nil
	}
	cur := "."
	for _, seg := range strings.Split(dir, "/") {
		parent := cur
		cur = path.Join(cur, seg)
		fi, err := m.root.Lstat(cur)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			m.log.Warn("replacing non-directory in the way", "local", cur, "type", fi.Mode().Type().String())
			if err := m.root.Remove(cur); err != nil {
				return fmt.Errorf("remove %s: %w", cur, err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("lstat %s: %w", cur, err)
		}
		if err := m.root.Mkdir(cur, m.dirMode); err != nil {
			return fmt.Errorf("mkdir %s: %w", cur, err)
		}
		// The umask may have taken bits away.
		if fi, err := m.root.Lstat(cur); err != nil {
			return fmt.Errorf("lstat %s: %w", cur, err)
		} else if fi.Mode().Perm() != m.dirMode {
			if err := m.root.Chmod(cur, m.dirMode); err != nil {
				return fmt.Errorf("chmod %s: %w", cur, err)
			}
		}
		d.add(parent)
		d.add(cur)
	}
	return nil
}

// writeFile atomically replaces name with data: a temporary file in the same
// directory, created with fileMode (and chmod-ed to it before any data is
// written, whatever the umask), written, fsynced, then renamed over name.
// The caller fsyncs the directory (recorded in d). Its parents must exist
// (ensureDir). An empty directory in the way is removed; a non-empty one
// yields errDirInTheWay.
func (m *mirror) writeFile(name string, data []byte, d dirty) error {
	if m.dry {
		return nil
	}
	dir := path.Dir(name)
	f, tmp, err := m.createTemp(dir)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			m.root.Remove(tmp)
		}
	}()
	if err := f.Chmod(m.fileMode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if fi, err := m.root.Lstat(name); err == nil && fi.IsDir() {
		if err := m.root.Remove(name); err != nil {
			return fmt.Errorf("%w: %s", errDirInTheWay, name)
		}
	}
	if err := m.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename to %s: %w", name, err)
	}
	ok = true
	d.add(dir)
	return nil
}

func (m *mirror) createTemp(dir string) (*os.File, string, error) {
	for try := 0; ; try++ {
		var b [8]byte
		rand.Read(b[:])
		tmp := path.Join(dir, tmpPrefix+hex.EncodeToString(b[:]))
		f, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, m.fileMode)
		if errors.Is(err, fs.ErrExist) && try < 3 {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create temp in %s: %w", dir, err)
		}
		return f, tmp, nil
	}
}

// removeFile removes the non-directory entry at name (a symlink itself, not
// its target). A missing entry is not an error; a directory is left alone
// and reported with isDir.
func (m *mirror) removeFile(name string, d dirty) (isDir bool, err error) {
	fi, err := m.lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lstat %s: %w", name, err)
	}
	if fi.IsDir() {
		return true, nil
	}
	if m.dry {
		return false, nil
	}
	if err := m.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove %s: %w", name, err)
	}
	d.add(path.Dir(name))
	return false, nil
}

// prune removes dir and its parents while they are empty directories,
// stopping below the store directory itself.
func (m *mirror) prune(dir string, d dirty) {
	if m.dry {
		return
	}
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		fi, err := m.root.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return
		}
		if err := m.root.Remove(dir); err != nil {
			return // not empty (or gone): nothing more to prune
		}
		delete(d, dir)
		d.add(path.Dir(dir))
	}
}

// readFile returns the content of the regular file at name, refusing a
// symlink.
func (m *mirror) readFile(name string) ([]byte, error) {
	if m.root == nil {
		return nil, fs.ErrNotExist
	}
	f, err := m.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	return io.ReadAll(io.LimitReader(f, maxShadowRead))
}

// syncDirs fsyncs every directory of d that still exists, and empties d.
func (m *mirror) syncDirs(d dirty) error {
	defer clear(d)
	if m.dry {
		return nil
	}
	for dir := range d {
		f, err := m.root.Open(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", dir, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
	}
	return nil
}

// removeTemps deletes temporary files left by a crash, anywhere under the
// store directory, except names in keep (leaves that happen to be called
// like that). Symlinked directories are not entered.
func (m *mirror) removeTemps(keep func(name string) bool) error {
	if m.dry || m.root == nil {
		return nil
	}
	d := dirty{}
	err := fs.WalkDir(m.root.FS(), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable subtree: nothing of ours to clean there
		}
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), tmpPrefix) && !keep(name) {
			if err := m.root.Remove(name); err == nil {
				m.log.Info("removed leftover temporary file", "local", name)
				d.add(path.Dir(name))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return m.syncDirs(d)
}
