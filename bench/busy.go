package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Shape of the pull-busy row's background writer: it rewrites a file of
// busyFileBytes in chunks of busyChunk, wrapping around, at busyRate at
// most, and never syncs it, as a database or log on the same disk would
// keep dirtying its pages. The pull starts once busyHead bytes are written.
const (
	busyFileBytes = 512 << 20
	busyChunk     = 1 << 20
	busyRate      = 64 << 20 // bytes per second
	busyHead      = 256 << 20
)

// pullBusyRow times `replds pull --once` of the data prefix, as the pull
// row does, while another writer keeps dirtying a large file on the same
// filesystem: what a pull costs on a busy host, where whatever syncs more
// than the pull's own files waits on that writer's data.
func (b *bench) pullBusyRow(ctx context.Context, c *cluster, n int) error {
	w, err := startBusyWriter(ctx, filepath.Join(c.dir, "busy"))
	if err != nil {
		return err
	}
	defer w.stop()
	if err := w.waitWritten(ctx, busyHead, time.Minute); err != nil {
		return err
	}
	before := w.written.Load()
	var during int64
	took, err := b.pullOnce(ctx, c, n, "pull-busy", func() { during = w.written.Load() - before })
	if err != nil {
		return err
	}
	if err := w.stop(); err != nil {
		return err
	}
	b.res.add(&metric{ID: "pull-busy", Row: "pull-busy", Order: 61, Nodes: n,
		Name:  fmt.Sprintf("`pull --once` of a %s-file subtree into an empty dir, another process writing", count(n)),
		Value: took.Seconds(), Unit: "s", Target: 10, TargetFor: 100000,
		Note: fmt.Sprintf("%.0f files/s; the writer dirtied %.0f MiB before and %.0f MiB during the pull, never synced",
			float64(n)/took.Seconds(), mib(before), mib(during))})
	return nil
}

// busyWriter rewrites one file without syncing it, until stopped.
type busyWriter struct {
	written atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
	err     error // set before done closes
	path    string
}

func startBusyWriter(ctx context.Context, path string) (*busyWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("busy writer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &busyWriter{cancel: cancel, done: make(chan struct{}), path: path}
	go func() {
		defer close(w.done)
		defer f.Close()
		w.err = w.run(ctx, f)
	}()
	return w, nil
}

func (w *busyWriter) run(ctx context.Context, f *os.File) error {
	chunk := make([]byte, busyChunk)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	start := time.Now()
	var off int64
	for ctx.Err() == nil {
		// Keep to busyRate: wait until the time the bytes so far are due.
		due := start.Add(time.Duration(float64(w.written.Load()) / busyRate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		chunk[0]++ // a new content each round
		if _, err := f.WriteAt(chunk, off); err != nil {
			return fmt.Errorf("busy writer: %w", err)
		}
		w.written.Add(busyChunk)
		off = (off + busyChunk) % busyFileBytes
	}
	return nil
}

// waitWritten waits until the writer has written n bytes.
func (w *busyWriter) waitWritten(ctx context.Context, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for w.written.Load() < n {
		select {
		case <-w.done:
			return fmt.Errorf("busy writer stopped after %.0f MiB: %v", mib(w.written.Load()), w.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("busy writer wrote %.0f MiB in %v, want %.0f", mib(w.written.Load()), timeout, mib(n))
		}
	}
	return nil
}

// stop ends the writer, removes its file and returns its error.
func (w *busyWriter) stop() error {
	w.once.Do(func() {
		w.cancel()
		<-w.done
		os.Remove(w.path)
	})
	return w.err
}
