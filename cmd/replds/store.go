package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/replds/replds/limits"
	"github.com/replds/replds/nodepath"
	repldspb "github.com/replds/replds/proto"
)

// newStoreCmd uploads a local file or tree.
func newStoreCmd() *cobra.Command {
	var (
		cf       clientFlags
		noFollow bool
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "store [--server=S] LOCAL REMOTE",
		Short: "Upload a local file or directory tree (or - for stdin) to REMOTE",
		Long: `Upload LOCAL to the path REMOTE. A directory is uploaded as one batch:
every regular file under it becomes a node under REMOTE. Symlinks in the
tree are followed, as cp -L does (a certbot live/ directory is all
symlinks): to files, uploaded with the link's name, and to directories. A
broken link, a loop, or a link to anything but a file or directory stops
the upload before anything is sent, naming it; --no-follow refuses every
symlink in the tree instead. With LOCAL "-", standard input becomes the
single node REMOTE. On success, one line on stderr says what was stored
where (-q: none).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local, remote := args[0], args[1]
			if err := nodepath.Validate(remote); err != nil {
				return localError(err, exitUsage)
			}
			writes, err := collectWrites(local, remote, noFollow)
			if err != nil {
				return err
			}
			batches := planBatches(writes)
			stored := make([]bool, len(batches))
			addr, err := cf.callAt(cmd.Context(), func(ctx context.Context, c repldspb.RepldsClient) error {
				return storeBatches(ctx, c, batches, stored)
			})
			if n := countTrue(stored); err != nil && n > 0 {
				return fmt.Errorf("%w (%d of %d batches were stored)", err, n, len(batches))
			}
			if err != nil {
				return err
			}
			if quiet {
				return nil
			}
			var size uint64
			for _, w := range writes {
				size += uint64(len(w.Data))
			}
			what := fmt.Sprintf("%d files (%s) under %s", len(writes), humanBytes(size), remote)
			if len(writes) == 1 && writes[0].Path == remote {
				what = fmt.Sprintf("%s (%s)", remote, humanBytes(size))
			}
			how := ""
			if len(batches) > 1 {
				how = fmt.Sprintf(", in %d batches (too large for one)", len(batches))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "stored %s on %s%s\n", what, addr, how)
			return nil
		},
	}
	cmd.Flags().BoolVar(&noFollow, "no-follow", false, "refuse symlinks in the tree instead of following them")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success")
	cf.registerWithTimeouts(cmd)
	return cmd
}

// collectWrites reads LOCAL into writes under remote. In a tree, a
// symlink to a regular file or a directory is followed, as cp -L does,
// unless noFollow; a symlink to anything else, a broken one and a loop are
// refused, naming the link.
func collectWrites(local, remote string, noFollow bool) ([]*repldspb.Write, error) {
	if local == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return []*repldspb.Write{{Path: remote, Data: data}}, nil
	}
	fi, err := os.Stat(local)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		data, err := os.ReadFile(local)
		if err != nil {
			return nil, err
		}
		return []*repldspb.Write{{Path: remote, Data: data}}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a regular file or directory", local)
	}
	// Walk first, then read the files in parallel: for a large tree the
	// reads dominate, and they wait on the disk one by one otherwise.
	w := treeWalk{remote: remote, noFollow: noFollow}
	if err := w.dir(local, remote, fi, nil); err != nil {
		return nil, err
	}
	if err := readAll(w.files, w.writes); err != nil {
		return nil, err
	}
	if len(w.writes) == 0 {
		return nil, fmt.Errorf("%s: no files to upload", local)
	}
	return w.writes, nil
}

// treeWalk collects the files of a tree for store.
type treeWalk struct {
	remote   string
	noFollow bool
	writes   []*repldspb.Write
	// files[i] is where writes[i]'s data is read from: the file, or the
	// target a symlink resolves to.
	files []string
}

// dirID identifies a directory, to find a symlink that leads back to one
// of the directories it is in.
type dirID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) dirID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirID{}
	}
	return dirID{uint64(st.Dev), st.Ino}
}

// dir walks the directory p, uploaded as target; parents are the
// directories above it, p included once added.
func (w *treeWalk) dir(p, target string, fi fs.FileInfo, parents []dirID) error {
	id := idOf(fi)
	parents = append(parents, id)
	entries, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := filepath.Join(p, e.Name())
		childTarget := path.Join(target, e.Name())
		if err := nodepath.Validate(childTarget); err != nil {
			return localError(fmt.Errorf("%s: %w", child, err), exitUsage)
		}
		src := child
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if w.noFollow {
				return fmt.Errorf("%s: a symlink (--no-follow uploads none)", child)
			}
			if info, err = os.Stat(child); err != nil {
				switch {
				case errors.Is(err, syscall.ELOOP):
					return fmt.Errorf("%s: a symlink loop", child)
				case errors.Is(err, fs.ErrNotExist):
					return fmt.Errorf("%s: a broken symlink (its target does not exist)", child)
				}
				return err
			}
			// Read the target itself: readFile opens no symlink.
			if src, err = filepath.EvalSymlinks(child); err != nil {
				return err
			}
		}
		switch {
		case info.IsDir():
			if slices.Contains(parents, idOf(info)) {
				return fmt.Errorf("%s: a symlink loop (it leads back to a directory it is in)", child)
			}
			if err := w.dir(src, childTarget, info, parents); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			w.writes = append(w.writes, &repldspb.Write{Path: childTarget})
			w.files = append(w.files, src)
		case src != child:
			return fmt.Errorf("%s: a symlink to %s, not a regular file (only files and directories are uploaded)", child, fileKind(info.Mode()))
		default:
			return fmt.Errorf("%s: %s, not a regular file (only files and directories are uploaded)", child, fileKind(info.Mode()))
		}
	}
	return nil
}

// fileKind names the type of a special file.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// maxBatchWrites is the most writes a server takes in one batch (its
// default limit).
const maxBatchWrites = limits.MaxBatch

// readAll reads files[i] into writes[i].Data, a few files at a time, and
// returns the first error.
func readAll(files []string, writes []*repldspb.Write) error {
	const readers = 8
	errs := make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(readers, len(files)) {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				writes[i].Data, errs[i] = readFile(files[i], buf)
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

// batchesInFlight is how many batches store sends at once: the next one
// travels while the server commits the previous one.
const batchesInFlight = 2

// splitBatchBytes is the size of the batches of an upload too large for
// one. Small batches keep every stage busy: the server commits one and
// pushes it to its peers while the next one travels. They also keep each
// server's memory for the upload small, which matters beyond the memory
// itself: on a virtual machine, touching fresh pages can cost more than
// the copies into them. With batches of 8 MiB instead of 64, a 100 MiB
// tree reached all 3 servers of the benchmark in about 4.1 s instead of
// 5.3 s, the first server using 2.2 s of CPU instead of 3.9 s.
const splitBatchBytes = 8 << 20

// planBatches returns writes as one batch, which the server stores
// atomically, when it takes them in one; otherwise in batches of
// splitBatchBytes.
func planBatches(writes []*repldspb.Write) [][]*repldspb.Write {
	if b := splitBatches(writes, maxMessage-(1<<20), maxBatchWrites); len(b) <= 1 {
		return b
	}
	return splitBatches(writes, splitBatchBytes, maxBatchWrites)
}

// storeBatches stores the batches not marked in stored yet, a few at a
// time, and marks those the server acknowledged. It returns the first
// error, after which it sends no more.
func storeBatches(ctx context.Context, c repldspb.RepldsClient, batches [][]*repldspb.Write, stored []bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	slots := make(chan struct{}, batchesInFlight)
	for i, b := range batches {
		if stored[i] {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			_, err := c.Store(ctx, &repldspb.StoreRequest{Writes: b})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored[i] = true
			case first == nil:
				first = err
				cancel()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = context.Cause(ctx) // the caller's, if it ended the upload
	}
	return first
}

func countTrue(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// readFile returns the content of the regular file p, read through buf,
// in as few system calls as can be: open, reads until end of file, close.
// For a tree of small files, os.ReadFile's extra calls (fstat, the
// poller's setup) take longer than the reads. A file that fills buf is
// fstat-ed once, and the rest read straight into a slice of its size. A
// symlink put in the place of the file since the walk is refused, a FIFO
// is not waited on.
func readFile(p string, buf []byte) ([]byte, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer syscall.Close(fd)
	read := func(b []byte) (n int, err error) {
		err = ignoringEINTR(func() (err error) {
			n, err = syscall.Read(fd, b)
			return err
		})
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		return n, nil
	}
	n := 0
	for n < len(buf) {
		m, err := read(buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return append([]byte{}, buf[:n]...), nil
		}
		n += m
	}
	// A large file: the rest goes straight where it stays. One byte more
	// than its size, so that the end shows without growing the slice.
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	data := make([]byte, n, max(int(st.Size), n)+1)
	copy(data, buf)
	for {
		if len(data) == cap(data) {
			data = slices.Grow(data, len(buf)) // the file grew
		}
		m, err := read(data[len(data):cap(data)])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return data, nil
		}
		data = data[:len(data)+m]
	}
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// splitBatches cuts writes into batches of at most maxBytes of data and
// maxWrites writes.
func splitBatches(writes []*repldspb.Write, maxBytes, maxWrites int) [][]*repldspb.Write {
	var out [][]*repldspb.Write
	start, size := 0, 0
	for i, w := range writes {
		n := len(w.Data) + len(w.Path) + 16
		if i > start && (size+n > maxBytes || i-start >= maxWrites) {
			out = append(out, writes[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, writes[start:])
}
