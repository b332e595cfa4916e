package watcher

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/replds/replds/limits"
)

// tmpPrefix starts the name of every temporary file the mirror creates,
// and follows ".DIR" in the temporary entries of atomic mode (snapshots).
const tmpPrefix = ".replds-tmp-"

// tempName returns a new random temporary name: before, then tmpPrefix,
// then 16 hex digits.
func tempName(before string) string {
	var b [8]byte
	rand.Read(b[:])
	return before + tmpPrefix + hex.EncodeToString(b[:])
}

// maxShadowRead bounds what is read back from a leaf about to be shadowed:
// the leaf came in one Watch message, which a server with the default
// limits keeps within this.
var maxShadowRead = int64(limits.MaxMessage(limits.MaxNodeSize, limits.MaxBatchBytes))

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
//
// In atomic mode (snaps set) root is the current snapshot until the first
// change of a batch, which calls stage: from then on root is a new
// snapshot, a copy of the current one, that publish swaps in at the end of
// the batch. The current snapshot is never written.
type mirror struct {
	// ctx is the watcher's run: long walks (the copy of a snapshot) stop
	// when it ends.
	ctx      context.Context
	root     *os.Root
	snaps    *snapshots
	dry      bool
	fileMode os.FileMode
	dirMode  os.FileMode
	// owner, when set, owns what the mirror creates (chown needs root).
	owner *Owner
	log   *slog.Logger

	// The files written in the open page wait in pending as temporary
	// files: flush makes them all durable, then renames them into place,
	// in order, and marks their directories in pendingDirs for the page's
	// directory fsyncs. Each file's writeback starts as soon as it is
	// written (startWriteback), and its handle goes to syncs, whose
	// workers fsync and close it while the page goes on. Only the page's
	// own files are synced: what other processes write on the filesystem
	// is not waited for. pendingNames holds their final names (dir/base),
	// for removeFile.
	pending      []pendingFile
	pendingNames map[string]struct{}
	pendingDirs  dirty
	syncs        *syncer
	// dirs caches the open directories of root (dirsOf) that the page
	// wrote in, so that a file's create, stat and rename each cost one
	// system call whatever its depth; see dir.
	dirs   map[string]*os.Root
	dirsOf *os.Root
	// flushErr is the error of a failed flush, returned by every flush
	// until the page is abandoned (dropPending), so that nothing commits a
	// page whose files were lost.
	flushErr error
}

// pendingFile is a written temporary file waiting for its rename: dir/tmp
// becomes dir/base.
type pendingFile struct {
	dir, tmp, base string
}

// syncFile is fsync, of a file or a directory, replaced in tests by a
// failing disk. It is called from several goroutines at once.
var syncFile = (*os.File).Sync

// maxOpenFiles bounds the written files of a page waiting for a worker to
// fsync them: past that, writeFile waits for the fsyncs to catch up. A
// page holds at most maxOpenFiles+syncWorkers files open.
const maxOpenFiles = 256

// maxOpenDirs bounds the directories a mirror keeps open.
const maxOpenDirs = 64

// stage makes root writable: in atomic mode, the staging snapshot of the
// open batch, created on first use. Every method calls it before its first
// change to the directory.
func (m *mirror) stage() error {
	if m.snaps == nil || m.dry || m.snaps.staging != nil {
		return nil
	}
	r, err := m.snaps.stage()
	if err != nil {
		return err
	}
	m.root = r
	return nil
}

// staged reports whether root may be written now without staging.
func (m *mirror) staged() bool { return m.snaps == nil || m.snaps.staging != nil }

// publish ends a batch in atomic mode: the staging snapshot, if any, is
// swapped in when the batch changed something, thrown away otherwise.
func (m *mirror) publish(changed bool) error {
	if m.snaps == nil || m.snaps.staging == nil {
		return nil
	}
	var err error
	if changed {
		err = m.snaps.swap()
	} else {
		err = m.snaps.discard()
	}
	m.root = m.snaps.root()
	return err
}

// chown gives name (not following a symlink) to the configured owner.
func (m *mirror) chown(r *os.Root, name string) error {
	if m.owner == nil {
		return nil
	}
	if err := r.Lchown(name, m.owner.UID, m.owner.GID); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	return nil
}

// mkdir creates dir in r with dirMode and the configured owner, whatever
// the umask, before anything is put in it.
func (m *mirror) mkdir(r *os.Root, dir string) error {
	if err := r.Mkdir(dir, m.dirMode); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := m.chown(r, dir); err != nil {
		return err
	}
	// The umask may have taken bits away.
	if fi, err := r.Lstat(dir); err != nil {
		return fmt.Errorf("lstat %s: %w", dir, err)
	} else if fi.Mode().Perm() != m.dirMode {
		if err := r.Chmod(dir, m.dirMode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	return nil
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
// directory belongs to the mirror), never followed. It walks down from the
// store directory one segment at a time through the directory opened at
// the previous one, so its cost is linear in the depth, and leaves dir
// open in the page's cache for writeFile.
func (m *mirror) ensureDir(dir string, d dirty) error {
	if dir == "." || m.dry {
		return nil
	}
	if m.dirsOf == m.root && m.dirs[dir] != nil {
		return nil // checked and opened in this page, unchanged since
	}
	w := dirWalk{r: m.root}
	defer w.close()
	cur := "."
	for _, seg := range strings.Split(dir, "/") {
		parent := cur
		cur = path.Join(cur, seg)
		fi, err := w.r.Lstat(seg)
		if err == nil && fi.IsDir() {
			if err := w.descend(seg, cur); err != nil {
				return err
			}
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lstat %s: %w", cur, err)
		}
		if !m.staged() {
			// Atomic mode: the change goes to a new staging snapshot,
			// whose parent of cur is opened again; what stands there may
			// differ (the copy leaves symlinks out).
			if err := m.stage(); err != nil {
				return err
			}
			if err := w.reopen(m.root, parent); err != nil {
				return err
			}
			if fi, err = w.r.Lstat(seg); err == nil && fi.IsDir() {
				if err := w.descend(seg, cur); err != nil {
					return err
				}
				continue
			}
		}
		if err == nil {
			m.log.Warn("replacing non-directory in the way", "local", cur, "type", fi.Mode().Type().String())
			// Not found: a symlink the staging snapshot left out.
			if err := w.r.Remove(seg); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", cur, err)
			}
		}
		if err := m.mkdir(w.r, seg); err != nil {
			return fmt.Errorf("%s: %w", cur, err)
		}
		d.add(parent)
		d.add(cur)
		if err := w.descend(seg, cur); err != nil {
			return err
		}
	}
	m.cacheDir(dir, w.take())
	return nil
}

// dirWalk holds the directory ensureDir is at: root itself (not owned) or
// one it opened (owned, closed when it moves on).
type dirWalk struct {
	r     *os.Root
	owned bool
}

// descend moves to the directory seg (local name cur) of the current one.
func (w *dirWalk) descend(seg, cur string) error {
	next, err := w.r.OpenRoot(seg)
	if err != nil {
		return fmt.Errorf("open %s: %w", cur, err)
	}
	w.close()
	w.r, w.owned = next, true
	return nil
}

// reopen moves to the directory name of root.
func (w *dirWalk) reopen(root *os.Root, name string) error {
	w.close()
	w.r, w.owned = root, false
	if name == "." {
		return nil
	}
	r, err := root.OpenRoot(name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	w.r, w.owned = r, true
	return nil
}

// take hands the current directory over to the caller.
func (w *dirWalk) take() *os.Root {
	r := w.r
	w.r, w.owned = nil, false
	return r
}

func (w *dirWalk) close() {
	if w.owned {
		w.r.Close()
	}
	w.r, w.owned = nil, false
}

// cacheDir puts r, the open directory dir of root, in the page's cache.
func (m *mirror) cacheDir(dir string, r *os.Root) {
	if m.dirsOf != m.root {
		m.forgetDirs()
	}
	if old := m.dirs[dir]; old != nil {
		old.Close()
	} else if len(m.dirs) >= maxOpenDirs {
		m.forgetDirs()
	}
	if m.dirs == nil {
		m.dirs = map[string]*os.Root{}
	}
	m.dirs[dir], m.dirsOf = r, m.root
}

// writeFile replaces name with data, atomically and durably once the page
// is flushed: a temporary file in the same directory, created with fileMode
// (and chmod-ed to it before any data is written, whatever the umask),
// written, then, by flush, synced and renamed over name. The caller fsyncs the
// directory (recorded in d). Its parents must exist (ensureDir). An empty
// directory in the way is removed; a non-empty one yields errDirInTheWay.
// It returns the summary of the file written (zero in a dry run), for the
// state.
//
// Until the flush, name still shows its previous content: every method
// that looks at or changes an existing entry flushes first (readFile: its
// caller), except isFile, which is never asked about a pending name, and
// removeFile, which flushes only for a pending name.
func (m *mirror) writeFile(name string, data []byte, d dirty) (fileSum, error) {
	if m.dry {
		return fileSum{}, nil
	}
	if err := m.stage(); err != nil {
		return fileSum{}, err
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	r, err := m.dir(dir)
	if err != nil {
		return fileSum{}, err
	}
	f, tmp, err := createTemp(r, m.fileMode)
	if err != nil {
		return fileSum{}, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			r.Remove(tmp)
		}
	}()
	// Owner first: chown clears set-id bits, and nobody else may read the
	// data, not even for an instant.
	if m.owner != nil {
		if err := f.Chown(m.owner.UID, m.owner.GID); err != nil {
			return fileSum{}, fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	if err := f.Chmod(m.fileMode); err != nil {
		return fileSum{}, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fileSum{}, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := startWriteback(f); err != nil {
		return fileSum{}, fmt.Errorf("write %s: %w", tmp, err)
	}
	// The rename keeps the inode and its modification time: what the
	// check at the next start compares the file with.
	sum, err := summarize(f, data)
	if err != nil {
		return fileSum{}, err
	}
	if fi, err := r.Lstat(base); err == nil && fi.IsDir() {
		m.forgetDir(name)
		if err := r.Remove(base); err != nil {
			return fileSum{}, fmt.Errorf("%w: %s", errDirInTheWay, name)
		}
	}
	if err := m.queue(f, pendingFile{dir: dir, tmp: tmp, base: base}, name, d); err != nil {
		return fileSum{}, err
	}
	ok = true
	return sum, nil
}

// summarize returns the summary of the file f just written with data.
func summarize(f *os.File, data []byte) (fileSum, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileSum{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	sum := fileSum{Size: fi.Size(), MTime: fi.ModTime().UnixNano(), Hash: sha256.Sum256(data)}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sum.Ino = st.Ino
	}
	return sum, nil
}

// queue adds the written temporary file f of local name to the page's
// pending files, renamed together at the flush, and hands f to the page's
// syncer, which fsyncs and closes it. On error the caller still owns f
// and the temporary file.
func (m *mirror) queue(f *os.File, pf pendingFile, name string, d dirty) error {
	if m.flushErr != nil {
		return m.flushErr
	}
	if m.syncs == nil {
		m.syncs = newSyncer()
	} else if err := m.syncs.failed(); err != nil {
		// Fail the page now: it cannot commit.
		m.flushErr = err
		return err
	}
	m.syncs.add(f, name)
	m.pending = append(m.pending, pf)
	if m.pendingNames == nil {
		m.pendingNames = map[string]struct{}{}
	}
	m.pendingNames[name] = struct{}{}
	m.pendingDirs = d
	return nil
}

// dir returns the directory dir of root (which must exist), opened. Opened
// directories are cached until the page ends or a directory is removed.
// The cache never holds more than maxOpenDirs.
func (m *mirror) dir(dir string) (*os.Root, error) {
	if dir == "." {
		return m.root, nil
	}
	if m.dirsOf != m.root {
		m.forgetDirs()
	}
	if r := m.dirs[dir]; r != nil {
		return r, nil
	}
	r, err := m.root.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	m.cacheDir(dir, r)
	return r, nil
}

// forgetDir closes the cached directory dir and those under it, before dir
// is removed.
func (m *mirror) forgetDir(dir string) {
	for name, r := range m.dirs {
		if name == dir || strings.HasPrefix(name, dir+"/") {
			r.Close()
			delete(m.dirs, name)
		}
	}
}

// forgetDirs closes the cached directories.
func (m *mirror) forgetDirs() {
	for _, r := range m.dirs {
		r.Close()
	}
	clear(m.dirs)
	m.dirsOf = nil
}

// flush makes the pending files durable and renames them into place. On
// error the files not renamed yet are removed: the page fails, and is
// received again.
func (m *mirror) flush() error {
	if m.flushErr != nil || len(m.pending) == 0 {
		return m.flushErr
	}
	if err := m.syncPending(); err != nil {
		return err
	}
	for i, p := range m.pending {
		r, err := m.dir(p.dir)
		if err == nil {
			err = r.Rename(p.tmp, p.base)
		}
		if err != nil {
			m.pending = m.pending[i:]
			m.flushErr = fmt.Errorf("rename to %s: %w", path.Join(p.dir, p.base), err)
			return m.flushErr
		}
		m.pendingDirs.add(p.dir)
	}
	m.pending = m.pending[:0]
	clear(m.pendingNames)
	return nil
}

// syncPending waits until the page's files are fsynced and closed. A
// failure is kept in flushErr: the page fails.
func (m *mirror) syncPending() error {
	if m.syncs == nil {
		return nil
	}
	err := m.syncs.wait()
	m.syncs = nil
	if err != nil {
		m.flushErr = err
	}
	return err
}

// syncer fsyncs and closes the files of a page, syncWorkers at a time, in
// the background. Its methods are called by the mirror's goroutine; the
// workers it starts end in wait, which the mirror calls before the page's
// renames (flush) or when it abandons the page (dropPending).
type syncer struct {
	files   chan syncJob
	workers int
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error // the first failure
}

type syncJob struct {
	f    *os.File
	name string
}

func newSyncer() *syncer {
	return &syncer{files: make(chan syncJob, maxOpenFiles)}
}

// add hands f (of local name) over, to be fsynced and closed. It blocks
// while maxOpenFiles wait.
func (s *syncer) add(f *os.File, name string) {
	if s.workers < syncWorkers {
		s.workers++
		s.wg.Go(s.work)
	}
	s.files <- syncJob{f, name}
}

func (s *syncer) work() {
	for j := range s.files {
		err := syncFile(j.f)
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("fsync %s: %w", j.name, err)
			}
			s.mu.Unlock()
		}
	}
}

// failed returns the first failure so far, if any.
func (s *syncer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// wait returns once every file added is fsynced and closed, with the
// first failure.
func (s *syncer) wait() error {
	close(s.files)
	s.wg.Wait()
	return s.err
}

// syncWorkers is how many fsyncs run at once. Each fsync of a new file
// ends with a cache flush of the device, and flushes asked for while one
// is under way are merged into the next: the more fsyncs are in flight,
// the fewer flushes a page costs (the pull-busy bench row, in README's
// performance section).
const syncWorkers = 64

// parallel calls f(i) for every i below n, on up to syncWorkers
// goroutines, and returns once all calls have returned: the error of the
// lowest i that failed, or nil.
func parallel(n int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, syncWorkers) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// dropPending abandons the page: it removes the temporary files still
// pending and forgets a flush error.
func (m *mirror) dropPending() {
	m.syncPending() // the handles closed before their files go
	m.flushErr = nil
	for _, p := range m.pending {
		m.root.Remove(path.Join(p.dir, p.tmp))
	}
	m.forgetDirs()
	m.pending = m.pending[:0]
	clear(m.pendingNames)
	m.pendingDirs = nil
}

// createTemp creates a new temporary file in r, with mode.
func createTemp(r *os.Root, mode os.FileMode) (*os.File, string, error) {
	for try := 0; ; try++ {
		tmp := tempName("")
		f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) && try < 3 {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create temp in %s: %w", r.Name(), err)
		}
		return f, tmp, nil
	}
}

// isFile reports whether name is a regular file in the mirror. It does not
// flush: a file pending in the open page is not seen, only what name was
// before the page. Its one caller asks about a path the state does not
// record as live, and every pending file is one the transaction records as
// live (a tombstone of it in the same page goes through removeFile, which
// flushes it), so the answer is the same. Flushing here would make every
// such tombstone of a replay flush its page, one fsync per file.
func (m *mirror) isFile(name string) (bool, error) {
	fi, err := m.lstat(name)
	return err == nil && fi.Mode().IsRegular(), nil
}

// removeFile removes the non-directory entry at name (a symlink itself, not
// its target). A missing entry is not an error; a directory is left alone
// and reported with isDir. When name was written in the open page, the
// page is flushed first, so that the file removed is not renamed back.
func (m *mirror) removeFile(name string, d dirty) (isDir bool, err error) {
	if _, ok := m.pendingNames[name]; ok {
		if err := m.flush(); err != nil {
			return false, err
		}
	}
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
	if err := m.stage(); err != nil {
		return false, err
	}
	if err := m.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove %s: %w", name, err)
	}
	d.add(path.Dir(name))
	return false, nil
}

// prune removes dir and its parents while they are empty directories,
// stopping below the store directory itself. In atomic mode it only acts
// on a staging snapshot: nothing was removed otherwise.
func (m *mirror) prune(dir string, d dirty) {
	if m.dry || !m.staged() {
		return
	}
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		fi, err := m.root.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return
		}
		m.forgetDir(dir)
		if err := m.root.Remove(dir); err != nil {
			return // not empty (or gone): nothing more to prune
		}
		delete(d, dir)
		d.add(path.Dir(dir))
	}
}

// occupied reports whether a directory with entries stands at name, where
// a leaf goes: writing it would fail with errDirInTheWay.
func (m *mirror) occupied(name string) bool {
	fi, err := m.lstat(name)
	if err != nil || !fi.IsDir() {
		return false
	}
	f, err := m.root.Open(name)
	if err != nil {
		return true
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// readFile returns the content of the regular file at name, refusing a
// symlink. The caller flushes first, so that a file written in the open
// page is read, not its predecessor, and a failed flush is not taken for an
// unreadable file.
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

// syncDirs flushes the pending files, then fsyncs every directory of d that
// still exists, and empties d.
func (m *mirror) syncDirs(d dirty) error {
	defer clear(d)
	if err := m.flush(); err != nil {
		return err
	}
	if m.dry {
		return nil
	}
	dirs := slices.Collect(maps.Keys(d))
	return parallel(len(dirs), func(i int) error {
		// Through the directory the page wrote in, when it is open.
		r, name := m.root, dirs[i]
		if m.dirsOf == m.root && m.dirs[dirs[i]] != nil {
			r, name = m.dirs[dirs[i]], "."
		}
		// A directory pruned since it was marked needs no sync.
		if err := syncDir(r, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("directory %s: %w", dirs[i], err)
		}
		return nil
	})
}

// tidy runs at start: it deletes temporary files left by a crash, anywhere
// under the directory, except names in keep (leaves that happen to be
// called like that), and with an owner configured gives it whatever it does
// not own yet (a mirror made before --owner was set). Symlinked
// directories are not entered. It stops when ctx ends.
func (m *mirror) tidy(ctx context.Context, keep func(name string) bool) error {
	if m.dry || m.root == nil {
		return nil
	}
	d := dirty{}
	err := fs.WalkDir(m.root.FS(), ".", func(name string, e fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			return nil // unreadable subtree: nothing of ours to clean there
		}
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), tmpPrefix) && !keep(name) {
			if err := m.root.Remove(name); err == nil {
				m.log.Info("removed leftover temporary file", "local", name)
				d.add(path.Dir(name))
			}
			return nil
		}
		if m.owner != nil && (e.IsDir() || e.Type().IsRegular()) && !m.owns(e) {
			if err := m.chown(m.root, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return m.syncDirs(d)
}

// owns reports whether e already has the configured owner.
func (m *mirror) owns(e fs.DirEntry) bool {
	fi, err := e.Info()
	if err != nil {
		return true // gone: nothing to do
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	return (m.owner.UID == -1 || int(st.Uid) == m.owner.UID) && (m.owner.GID == -1 || int(st.Gid) == m.owner.GID)
}
