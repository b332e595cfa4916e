package server

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// trimSlack is how much more memory than its live heap the runtime may
// keep before an idle server returns it to the system.
const trimSlack = 32 << 20

// trimLoop returns the memory the Go runtime holds but no longer uses to
// the system once the server is quiet after a burst of writes. Left alone,
// the runtime keeps the freed heap of a large upload, and gRPC its pooled
// message buffers (up to the message limit each), for minutes: a server
// that took 100k writes idled at three times the memory of one restarted
// with the same data. Every MemoryTrimInterval, if the store committed
// nothing since the previous check and the heap exceeds the live
// data by trimSlack, it collects twice (pooled buffers survive one
// collection) and releases what is free. Busy servers are never
// interrupted.
func (s *Server) trimLoop() {
	samples := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	last := s.store.CommitCount()
	t := time.NewTicker(s.cfg.MemoryTrimInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		commits := s.store.CommitCount()
		busy := commits != last
		last = commits
		if busy {
			continue
		}
		rtmetrics.Read(samples)
		held := samples[0].Value.Uint64() + samples[1].Value.Uint64() + samples[2].Value.Uint64()
		live := samples[3].Value.Uint64()
		if held < live+trimSlack {
			continue
		}
		start := time.Now()
		runtime.GC()
		debug.FreeOSMemory()
		rtmetrics.Read(samples)
		after := samples[0].Value.Uint64() + samples[1].Value.Uint64() + samples[2].Value.Uint64()
		s.log.Debug("returned idle memory to the system", "heap_before", held, "heap_after", after, "duration", time.Since(start))
	}
}
