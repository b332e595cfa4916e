package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// onSIGHUP calls f on every SIGHUP until the returned stop function is
// called; stop waits for a running f to finish.
func onSIGHUP(f func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ch:
				f()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}
