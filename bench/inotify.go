package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// renameEvent is a file renamed into the watched directory, with the time
// the bench read the event.
type renameEvent struct {
	name string
	at   time.Time
}

// inotifyWatch reports files renamed into one directory, which is how
// replds pull puts every file in place (temp file, fsync, rename): the
// event marks the moment the new content is visible.
type inotifyWatch struct {
	f      *os.File
	events chan renameEvent
	wg     sync.WaitGroup
}

func watchRenames(dir string) (*inotifyWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	// Non-blocking, so the runtime poller serves reads and close ends them.
	w := &inotifyWatch{f: os.NewFile(uintptr(fd), "inotify"), events: make(chan renameEvent, 1024)}
	w.wg.Add(1)
	go w.read()
	return w, nil
}

func (w *inotifyWatch) read() {
	defer w.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		at := time.Now()
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12 : off+16]))
			name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+nameLen]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			select {
			case w.events <- renameEvent{name: string(name), at: at}:
			default: // nobody waits for it
			}
			off += syscall.SizeofInotifyEvent + nameLen
		}
	}
}

func (w *inotifyWatch) close() {
	w.f.Close()
	w.wg.Wait()
}
