package watcher

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxDriftLogs bounds the lines a check logs, one per drifted file; past
// it, one line counts the rest.
const maxDriftLogs = 100

// checkStats counts what a check did.
type checkStats struct {
	Files, Hashed, Drifted, Modes int
}

// check runs at start: it compares every file the state expects in the
// mirror with what the state recorded when writing it (existence, type,
// size, modification time, inode, and the content hash only when one of
// those moved) and fixes the mode of files whose permissions changed. A
// file that drifted (missing, not a regular file, content changed, or a
// parent that is not a directory) is marked for repair and logged; with
// any, a full resync begins, whose replay writes them again at the version
// applied (applyNode). Files found intact under a new stat, and records
// without a summary (from an older state), get their summary recorded.
// Each directory is opened once, files are stat-ed through it without
// following symlinks: the cost is one fstatat per file.
func (a *applier) check(ctx context.Context) (checkStats, error) {
	var st checkStats
	if a.m.root == nil {
		return st, nil // a dry run of a directory that does not exist
	}
	start := time.Now()
	w, err := newDirWalker(a.m.root)
	if err != nil {
		return st, fmt.Errorf("watcher: check: %w", err)
	}
	defer w.close()
	updates := map[string]nodeRec{}
	var drifted []string
	err = a.st.eachMirrored(func(rp string, r nodeRec) error {
		if st.Files%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		st.Files++
		name := a.localName(rp)
		got, problem, did, err := a.checkFile(w, name, r.File)
		if err != nil {
			return err
		}
		st.Hashed += did.hashed
		st.Modes += did.modeFixed
		if problem != "" {
			st.Drifted++
			drifted = append(drifted, rp)
			if st.Drifted <= maxDriftLogs {
				a.log.Warn("mirrored file drifted; rewriting it", "path", rp, "local", name, "problem", problem)
			}
			return nil
		}
		if got != r.File {
			r.File = got
			updates[rp] = r
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("watcher: check: %w", err)
	}
	if st.Drifted > maxDriftLogs {
		a.log.Warn("more mirrored files drifted", "count", st.Drifted-maxDriftLogs)
	}
	if err := a.st.recordCheck(updates, drifted); err != nil {
		return st, err
	}
	a.log.Info("mirror checked", "files", st.Files, "hashed", st.Hashed, "drifted", st.Drifted,
		"modes_fixed", st.Modes, "duration", time.Since(start).Round(time.Millisecond))
	return st, nil
}

// checkWork counts what checking one file took: a hash, a mode fixed.
type checkWork struct {
	hashed, modeFixed int
}

// checkFile compares the file name with want. It returns the file's
// current summary, or a problem saying how it drifted, and what it did. A
// mode changed by hand is set back. An error is returned only for a
// failure to read or fix what exists.
func (a *applier) checkFile(w *dirWalker, name string, want fileSum) (got fileSum, problem string, did checkWork, err error) {
	dir, base := path.Split(name)
	fd, problem := w.open(path.Clean(dir))
	if problem != "" {
		return got, problem, did, nil
	}
	var stat unix.Stat_t
	if err := unix.Fstatat(fd, base, &stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return got, "missing", did, nil
		}
		return got, "", did, fmt.Errorf("stat %s: %w", name, err)
	}
	if stat.Mode&unix.S_IFMT != unix.S_IFREG {
		return got, fmt.Sprintf("a %s, not a regular file", fileType(uint32(stat.Mode))), did, nil
	}
	got = fileSum{Size: stat.Size, MTime: stat.Mtim.Nano(), Ino: stat.Ino}
	perm := os.FileMode(stat.Mode & 0o7777)
	intact := got.sameStat(want) && want.known()
	if intact && perm == a.m.fileMode {
		got.Hash = want.Hash
		return got, "", did, nil
	}
	f, err := openAt(fd, base)
	if err != nil {
		return got, "", did, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	if perm != a.m.fileMode {
		if err := a.fixMode(f, name, perm); err != nil {
			return got, "", did, err
		}
		if !a.m.dry {
			did.modeFixed++
		}
	}
	if intact {
		got.Hash = want.Hash
		return got, "", did, nil
	}
	did.hashed++
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return got, "", did, fmt.Errorf("read %s: %w", name, err)
	}
	h.Sum(got.Hash[:0])
	if want.known() && got.Hash != want.Hash {
		return got, fmt.Sprintf("content changed (size %d, written with %d)", got.Size, want.Size), did, nil
	}
	return got, "", did, nil
}

// fixMode gives the open file f (local name), whose permissions are perm,
// the mirror's mode back.
func (a *applier) fixMode(f *os.File, name string, perm os.FileMode) error {
	if a.m.dry {
		a.log.Info("would fix mode", "local", name, "mode", perm, "want", a.m.fileMode)
		return nil
	}
	if err := f.Chmod(a.m.fileMode); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	a.log.Warn("mirrored file mode fixed", "local", name, "mode", perm, "want", a.m.fileMode)
	return nil
}

// fileType names the type bits of a stat mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return "special file"
}

// openAt opens the regular file base of the directory fd for reading,
// refusing a symlink and never blocking on a FIFO put in its place.
func openAt(fd int, base string) (*os.File, error) {
	nfd, err := unix.Openat(fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), base), nil
}

// dirWalker opens the directories of the mirror for the check, each once
// while the check goes through the files under it in path order, never
// through a symlink. It keeps the chain of directories from the store
// directory down to the current one open.
type dirWalker struct {
	root  *os.File
	chain []walkDir
}

// walkDir is one open directory of the chain, or the problem that kept it
// (and so everything under it) from being opened.
type walkDir struct {
	name    string
	f       *os.File
	problem string
}

func newDirWalker(root *os.Root) (*dirWalker, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("open store directory: %w", err)
	}
	return &dirWalker{root: f}, nil
}

func (w *dirWalker) close() {
	w.cut(0)
	w.root.Close()
}

// cut closes the directories of the chain from depth n on.
func (w *dirWalker) cut(n int) {
	for _, d := range w.chain[n:] {
		if d.f != nil {
			d.f.Close()
		}
	}
	w.chain = w.chain[:n]
}

// open returns the descriptor of dir ("." or a slash-separated path under
// the store directory), or the problem that keeps it from being a
// directory of the mirror.
func (w *dirWalker) open(dir string) (fd int, problem string) {
	if dir == "." {
		return int(w.root.Fd()), ""
	}
	segs := strings.Split(dir, "/")
	n := 0
	for n < len(w.chain) && n < len(segs) && w.chain[n].name == segs[n] {
		n++
	}
	w.cut(n)
	for ; n < len(segs); n++ {
		d := walkDir{name: segs[n]}
		parent := w.root
		if n > 0 {
			parent = w.chain[n-1].f
			d.problem = w.chain[n-1].problem
		}
		if d.problem == "" {
			local := strings.Join(segs[:n+1], "/")
			nfd, err := unix.Openat(int(parent.Fd()), segs[n], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			switch {
			case err == nil:
				d.f = os.NewFile(uintptr(nfd), local)
			case errors.Is(err, unix.ENOENT):
				d.problem = "directory " + local + " missing"
			case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
				d.problem = local + " is not a directory"
			default:
				d.problem = fmt.Sprintf("directory %s: %v", local, err)
			}
		}
		w.chain = append(w.chain, d)
	}
	last := w.chain[len(w.chain)-1]
	if last.problem != "" {
		return -1, last.problem
	}
	return int(last.f.Fd()), ""
}
