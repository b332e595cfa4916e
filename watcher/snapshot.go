package watcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Atomic mode (Config.Atomic) lays the mirror out as
//
//	PARENT/DIR                     symlink to .DIR.replds-snap-N
//	PARENT/.DIR.replds-snap-M      retired snapshots (M < N), kept for
//	                               the readers that resolved DIR before
//	PARENT/.DIR.replds-snap-N      the current snapshot: a complete tree
//	PARENT/.DIR.replds-snap-N+1    the staging snapshot of the open batch
//
// The first change of a batch creates the staging snapshot as a copy of the
// current one (files hard-linked, directories created anew), under a
// temporary name renamed into place once complete and durable. The batch
// is written into it; at the bookmark the state records the batch and
// the staging number ("snap" in meta, the sealed snapshot) in one
// transaction, then a new symlink is renamed over DIR; the snapshot it
// replaced is retired, not removed: it stays until the next swap and at
// least Config.AtomicGrace, within a bound of maxRetiredFiles files in all
// retired snapshots but the last. A
// reader that resolves DIR once (opens the directory, or readlink) sees
// one complete batch, and the tree it resolved stays whole until the
// next swap or for the grace period, whichever is later (the reader
// contract, in README); the triggers run after the swap.
//
// Recovery (settle, at start and at each session) relies on two facts: a
// snapshot directory with its final name is complete, and the staging
// snapshot is numbered max(current, sealed)+1. So: the sealed snapshot, if
// newer than the current one, is swapped in (a crash between the state
// commit and the rename); the snapshot numbered max(current, sealed)+1 is
// the staging snapshot of a batch the state has partly recorded, and is
// kept; so is the highest snapshot below the current one, the last
// retired (how long ago the others were retired is not known after a
// restart); every other snapshot and temporary entry of DIR is removed.

// maxRetiredFiles bounds the files (hard links) of the retired snapshots
// kept within the grace period, the last one aside, so that a burst of
// batches does not pile up copies of a large tree; a small tree keeps
// every snapshot of its grace period. A variable for tests.
var maxRetiredFiles = 1 << 20

// retiredSnap is a snapshot replaced by a newer one, when, and about how
// many files it holds (those of the copy it was made from; 0 if unknown).
type retiredSnap struct {
	n     uint64
	at    time.Time
	files int
}

// snapInfix follows ".DIR" in the names of snapshots; their temporary
// entries have tmpPrefix there instead.
const snapInfix = ".replds-snap-"

// snapshots manages the snapshot directories of an atomic mirror. It is
// used by the mirror's goroutine only.
type snapshots struct {
	m      *mirror  // modes, owner and log
	parent *os.Root // the store directory's parent
	base   string   // the store directory's name (the symlink)
	// seal records n as the sealed snapshot in the state.
	seal func(n uint64) error

	cur     uint64   // number of the current snapshot
	curRoot *os.Root // the current snapshot, never written
	// retired are the snapshots replaced by a swap and kept for readers,
	// oldest first; the last is kept until the next swap, the others
	// until grace has passed since their retirement.
	retired []retiredSnap
	grace   time.Duration
	now     func() time.Time
	sealed  uint64   // number of the last snapshot the state sealed
	staging *os.Root // the staging snapshot; nil between batches
	next    uint64   // number of the staging snapshot
	// curFiles and nextFiles estimate the files of the current and the
	// staging snapshot (those of the copy each was made from).
	curFiles, nextFiles int
}

// openSnapshots opens the atomic layout of dir, creating or repairing it
// (settle) with sealed, the state's last sealed snapshot number. seal
// records a new sealed number in the state (when a plain directory is
// adopted).
func openSnapshots(dir string, sealed uint64, seal func(uint64) error, grace time.Duration, m *mirror) (*snapshots, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	parent, err := os.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("parent of the store directory: %w", err)
	}
	s := &snapshots{m: m, parent: parent, base: filepath.Base(abs), seal: seal, grace: grace, now: time.Now}
	if err := s.settle(sealed); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// root returns where the mirror works: the staging snapshot during a
// batch, else the current one.
func (s *snapshots) root() *os.Root {
	if s.staging != nil {
		return s.staging
	}
	return s.curRoot
}

func (s *snapshots) snapName(n uint64) string {
	return "." + s.base + snapInfix + strconv.FormatUint(n, 10)
}

// parseSnap returns the number of a snapshot name of this directory.
func (s *snapshots) parseSnap(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "."+s.base+snapInfix)
	if !ok || rest == "" || rest[0] == '0' || strings.Trim(rest, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

func (s *snapshots) isTemp(name string) bool {
	return strings.HasPrefix(name, "."+s.base+tmpPrefix)
}

// tempName returns a new temporary name for an entry of the parent.
func (s *snapshots) tempName() string { return tempName("." + s.base) }

// close closes the open snapshots and the parent.
func (s *snapshots) close() {
	s.closeSnaps()
	s.parent.Close()
}

func (s *snapshots) closeSnaps() {
	if s.staging != nil {
		s.staging.Close()
		s.staging = nil
	}
	if s.curRoot != nil {
		s.curRoot.Close()
		s.curRoot = nil
	}
}

// settle brings the layout to a consistent state and opens it: the store
// directory is a symlink to a complete snapshot, the newest sealed one;
// a staging snapshot left by an interrupted batch is reopened; leftovers
// are removed. A plain directory in place of the symlink (a mirror made
// without --atomic) becomes the first snapshot.
func (s *snapshots) settle(sealed uint64) error {
	s.closeSnaps()
	snaps, temps, err := s.scan()
	if err != nil {
		return err
	}
	link, err := s.readLink(snaps)
	if err != nil {
		return err
	}
	cur, sealed, err := s.repair(link, snaps, sealed)
	if err != nil {
		return err
	}
	s.sealed = sealed
	stagingN := max(cur, sealed) + 1
	var prev uint64
	for n := range snaps {
		if n < cur {
			prev = max(prev, n)
		}
	}
	// Snapshots retired by this run keep their place (and their grace):
	// a settle at a reconnect must not remove what a reader may still be
	// in. Without any (a fresh start), the newest below cur is kept.
	kept := s.retired[:0]
	for _, r := range s.retired {
		if snaps[r.n] && r.n < cur {
			kept = append(kept, r)
		}
	}
	s.retired = kept
	if len(s.retired) == 0 && prev != 0 {
		s.retired = append(s.retired, retiredSnap{n: prev, at: s.now()})
	}
	if err := s.prune(snaps, temps, cur, stagingN); err != nil {
		return err
	}
	if s.curRoot, err = s.openSnap(s.snapName(cur)); err != nil {
		return fmt.Errorf("open snapshot: %w", err)
	}
	s.cur = cur
	if snaps[stagingN] {
		if s.staging, err = s.openSnap(s.snapName(stagingN)); err != nil {
			return fmt.Errorf("open staging snapshot: %w", err)
		}
		s.next = stagingN
		s.m.log.Info("resuming the staging snapshot of an interrupted batch", "snapshot", stagingN)
	}
	return nil
}

// scan lists the snapshot directories beside the store directory, by
// number, and the leftover temporary entries.
func (s *snapshots) scan() (snaps map[uint64]bool, temps []string, err error) {
	f, err := s.parent.Open(".")
	if err != nil {
		return nil, nil, fmt.Errorf("open parent directory: %w", err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("read parent directory: %w", err)
	}
	snaps = map[uint64]bool{}
	for _, e := range entries {
		n, ok := s.parseSnap(e.Name())
		switch {
		case ok && e.Type()&fs.ModeSymlink != 0:
			return nil, nil, fmt.Errorf("snapshot %s %w", e.Name(), ErrSymlink)
		case ok && e.IsDir():
			snaps[n] = true
		case s.isTemp(e.Name()):
			temps = append(temps, e.Name())
		}
	}
	return snaps, temps, nil
}

// openSnap opens the snapshot directory name of the parent, refusing a
// symlink (os.Root would follow one that stays inside the parent): the
// entry is checked first, and the directory opened must be that entry.
func (s *snapshots) openSnap(name string) (*os.Root, error) {
	fi, err := s.parent.Lstat(name)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("snapshot %s %w", name, ErrSymlink)
	}
	r, err := s.parent.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	if got, err := r.Stat("."); err != nil || !os.SameFile(fi, got) {
		r.Close()
		return nil, fmt.Errorf("snapshot %s replaced while being opened", name)
	}
	return r, nil
}

// storeLink is what stands at the store directory's name.
type storeLink struct {
	cur    uint64 // the snapshot the symlink names
	linked bool   // the symlink points to an existing snapshot
	plain  bool   // a plain directory stands where the symlink goes
}

// readLink reads what the store directory is; snaps are the snapshots
// that exist.
func (s *snapshots) readLink(snaps map[uint64]bool) (storeLink, error) {
	var l storeLink
	fi, err := s.parent.Lstat(s.base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return l, fmt.Errorf("lstat store directory: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := s.parent.Readlink(s.base)
		if err != nil {
			return l, fmt.Errorf("read store directory link: %w", err)
		}
		n, ok := s.parseSnap(target)
		if !ok {
			return l, fmt.Errorf("the store directory %s is a symlink to %s, not to a snapshot of an atomic pull", s.base, target)
		}
		l.cur, l.linked = n, snaps[n]
		if !l.linked {
			s.m.log.Warn("store directory links to a missing snapshot; recreating it", "target", target)
		}
	case fi.IsDir():
		l.plain = true
	default:
		return l, fmt.Errorf("the store directory %s is a %v, not a directory or a snapshot symlink", s.base, fi.Mode().Type())
	}
	return l, nil
}

// repair makes the store directory a symlink to the right snapshot: a
// plain directory is adopted, a sealed snapshot the crash left unswapped
// is swapped in, a missing one is created empty. It adds what it creates
// to snaps and returns the current snapshot and the sealed number.
func (s *snapshots) repair(l storeLink, snaps map[uint64]bool, sealed uint64) (cur, newSealed uint64, err error) {
	highest := sealed
	for n := range snaps {
		highest = max(highest, n)
	}
	cur = l.cur
	switch {
	case l.plain:
		cur = highest + 1
		if err := s.adopt(cur); err != nil {
			return 0, 0, err
		}
		snaps[cur] = true
		sealed = cur
	case sealed > 0 && snaps[sealed] && (!l.linked || sealed > cur):
		// The state sealed this snapshot, the crash came before the swap.
		s.m.log.Info("swapping in the last sealed snapshot", "snapshot", sealed, "was", cur)
		cur = sealed
		if err := s.setLink(cur); err != nil {
			return 0, 0, err
		}
	case !l.linked:
		cur = highest + 1
		if err := s.m.mkdir(s.parent, s.snapName(cur)); err != nil {
			return 0, 0, err
		}
		if err := s.setLink(cur); err != nil {
			return 0, 0, err
		}
		snaps[cur] = true
	default:
		if s.m.owner != nil {
			// Converge the symlink's own ownership too.
			if err := s.m.chown(s.parent, s.base); err != nil {
				return 0, 0, err
			}
		}
	}
	return cur, sealed, nil
}

// prune removes every snapshot but cur, stagingN and the retired ones, and
// the leftover temporary entries.
func (s *snapshots) prune(snaps map[uint64]bool, temps []string, cur, stagingN uint64) error {
	for n := range snaps {
		if n == cur || n == stagingN || slices.ContainsFunc(s.retired, func(r retiredSnap) bool { return r.n == n }) {
			continue
		}
		if err := s.parent.RemoveAll(s.snapName(n)); err != nil {
			return fmt.Errorf("remove stale snapshot: %w", err)
		}
		s.m.log.Info("removed stale snapshot", "snapshot", n)
	}
	for _, name := range temps {
		if err := s.parent.RemoveAll(name); err != nil {
			return fmt.Errorf("remove leftover %s: %w", name, err)
		}
		s.m.log.Info("removed leftover temporary entry", "name", name)
	}
	return nil
}

// adopt turns the plain store directory into snapshot n: sealed in the
// state first, so that a crash between the two renames that follow (when
// the store directory does not exist) is completed by the next settle.
func (s *snapshots) adopt(n uint64) error {
	s.m.log.Warn("turning the store directory into the first atomic snapshot", "snapshot", n)
	if err := s.seal(n); err != nil {
		return fmt.Errorf("record adopted snapshot: %w", err)
	}
	if err := s.parent.Rename(s.base, s.snapName(n)); err != nil {
		return fmt.Errorf("move store directory to a snapshot: %w", err)
	}
	return s.setLink(n)
}

// setLink atomically points the store directory to snapshot n: a new
// symlink renamed over it, the parent fsynced.
func (s *snapshots) setLink(n uint64) error {
	tmp := s.tempName()
	if err := s.parent.Symlink(s.snapName(n), tmp); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := s.m.chown(s.parent, tmp); err != nil {
		s.parent.Remove(tmp)
		return err
	}
	if err := s.parent.Rename(tmp, s.base); err != nil {
		s.parent.Remove(tmp)
		return fmt.Errorf("rename symlink over the store directory: %w", err)
	}
	return s.syncParent()
}

func (s *snapshots) syncParent() error {
	return syncDir(s.parent, ".")
}

// syncDir fsyncs the directory name of r.
func syncDir(r *os.Root, name string) error {
	f, err := r.Open(name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	err = syncFile(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	return nil
}

// stage creates the staging snapshot, a durable copy of the current one,
// and returns it opened.
func (s *snapshots) stage() (*os.Root, error) {
	start := time.Now()
	n := max(s.cur, s.sealed) + 1
	name := s.snapName(n)
	// Left by a discard that failed half-way.
	if err := s.parent.RemoveAll(name); err != nil {
		return nil, fmt.Errorf("remove old staging snapshot: %w", err)
	}
	tmp := s.tempName()
	files, err := s.copyTree(tmp)
	if err != nil {
		s.parent.RemoveAll(tmp)
		return nil, fmt.Errorf("copy snapshot: %w", err)
	}
	if err := s.parent.Rename(tmp, name); err != nil {
		s.parent.RemoveAll(tmp)
		return nil, fmt.Errorf("rename staging snapshot: %w", err)
	}
	if err := s.syncParent(); err != nil {
		return nil, err
	}
	r, err := s.openSnap(name)
	if err != nil {
		return nil, fmt.Errorf("open staging snapshot: %w", err)
	}
	s.staging, s.next, s.nextFiles = r, n, files
	s.m.log.Debug("staging snapshot created", "snapshot", n, "files", files, "duration", time.Since(start))
	return r, nil
}

// copyTree makes dst (a new entry of the parent) a copy of the current
// snapshot, stopping when the watcher's run ends: directories are created with the mirror's mode and owner,
// regular files are hard-linked (copied if linking fails), anything else
// is left out. The copy is durable before it returns: its directories
// are fsynced, syncWorkers at a time (a linked file is the durable file of
// the current snapshot; a copied one is fsynced by copyFile).
func (s *snapshots) copyTree(dst string) (files int, err error) {
	if err := s.m.mkdir(s.parent, dst); err != nil {
		return 0, err
	}
	dirs := []string{dst}
	src := s.snapName(s.cur)
	err = fs.WalkDir(s.curRoot.FS(), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			return err // a snapshot that cannot be read cannot be copied
		}
		if err := s.m.ctx.Err(); err != nil {
			return err // stopping: the partial copy is removed
		}
		if name == "." {
			return nil
		}
		to := path.Join(dst, name)
		switch {
		case e.IsDir():
			if err := s.m.mkdir(s.parent, to); err != nil {
				return err
			}
			dirs = append(dirs, to)
		case e.Type().IsRegular():
			files++
			if err := s.parent.Link(path.Join(src, name), to); err != nil {
				if err := s.copyFile(name, to); err != nil {
					return err
				}
			}
		default:
			s.m.log.Warn("left out of the new snapshot: not a regular file or directory", "local", name, "type", e.Type().String())
		}
		return nil
	})
	if err != nil {
		return files, err
	}
	return files, parallel(len(dirs), func(i int) error { return syncDir(s.parent, dirs[i]) })
}

// copyFile copies the current snapshot's file name to the parent's entry
// to, with the same mode and (as root) owner, fsynced.
func (s *snapshots) copyFile(name, to string) error {
	in, err := s.curRoot.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := s.parent.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := out.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", to, err)
		}
	}
	if err := out.Chmod(fi.Mode().Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", to, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", to, err)
	}
	return out.Close()
}

// swap publishes the staging snapshot (already sealed in the state): the
// symlink is replaced; the snapshot it replaced is retired, left for the
// readers that resolved the link before, and the retired snapshots past
// the grace period (or past maxRetiredFiles) are removed.
func (s *snapshots) swap() error {
	if err := s.setLink(s.next); err != nil {
		return err
	}
	s.curRoot.Close()
	s.retired = append(s.retired, retiredSnap{n: s.cur, at: s.now(), files: s.curFiles})
	s.cur, s.curRoot, s.sealed, s.curFiles = s.next, s.staging, s.next, s.nextFiles
	s.staging = nil
	s.removeRetired()
	return nil
}

// removeRetired removes the retired snapshots that no reader may still
// count on: all but the last, once the grace period has passed since
// their retirement, and the oldest ones past maxRetiredFiles.
func (s *snapshots) removeRetired() {
	now := s.now()
	files := 0
	keep := make([]bool, len(s.retired))
	for i := len(s.retired) - 1; i >= 0; i-- {
		r := s.retired[i]
		if i < len(s.retired)-1 {
			files += r.files
		}
		keep[i] = i == len(s.retired)-1 || now.Sub(r.at) < s.grace && files <= maxRetiredFiles
	}
	kept := s.retired[:0]
	for i, r := range s.retired {
		if keep[i] {
			kept = append(kept, r)
			continue
		}
		if err := s.parent.RemoveAll(s.snapName(r.n)); err != nil {
			// Harmless: the next settle removes it.
			s.m.log.Warn("old snapshot not removed", "snapshot", r.n, "err", err)
		}
	}
	s.retired = kept
}

// discard drops the staging snapshot of a batch that changed nothing.
func (s *snapshots) discard() error {
	s.staging.Close()
	s.staging = nil
	if err := s.parent.RemoveAll(s.snapName(s.next)); err != nil {
		return fmt.Errorf("remove staging snapshot: %w", err)
	}
	return nil
}
