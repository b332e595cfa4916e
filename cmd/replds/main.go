// Command replds is the single binary of replds: server, clients and tools.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	ctx, stop := notifyShutdown(context.Background(), os.Exit, os.Interrupt, syscall.SIGTERM)
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		// Package prefixes ("store: ") mean nothing to users.
		fmt.Fprintf(os.Stderr, "replds: %s\n", userMessage(err.Error()))
		os.Exit(exitCode(err))
	}
}

// notifyShutdown returns a context cancelled by the first of sigs, for a
// graceful shutdown; a second one calls exit(1) at once, for when that
// shutdown takes too long. stop stops listening for sigs and waits for the
// goroutine that does.
func notifyShutdown(parent context.Context, exit func(int), sigs ...os.Signal) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case sig := <-ch:
			slog.Info("shutting down; a second signal forces exit", "signal", sig.String())
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			slog.Error("second signal: exiting now", "signal", sig.String())
			exit(1)
		case <-done:
		}
	})
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
		cancel()
	}
}
