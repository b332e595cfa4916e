package server

import (
	"sync"
	"time"

	"github.com/replds/replds/store"
)

// pushFresh is how recently a push stream must have delivered a message
// for this server to claim, in its digests, that the stream carries its
// origin's writes. A stream cut by a partition stays open until keepalives
// notice, up to 40 s later, and must not hold back relays meanwhile.
const pushFresh = 2 * time.Second

// inbound tracks the push streams into this server. A digest names the
// origins whose writes are on their way through one of them
// (SyncRequest.pushed_since), so that peers do not relay those writes too:
// during a bulk load, a third server otherwise sends a peer much of what
// the origin's own push is about to deliver.
//
// It also rate-limits the info line for the batches the streams applied
// (applied), so that an operator sees replicated writes arrive without a
// bulk load flooding the log.
type inbound struct {
	mu      sync.Mutex
	streams map[*inStream]struct{}
	// logged is when the last "replicated" line was allowed; batches and
	// nodes count what was applied since and not yet logged.
	logged         time.Time
	batches, nodes int
}

// replicatedLogInterval is the least time between two "replicated" log
// lines.
const replicatedLogInterval = time.Second

// inStream is one push stream into this server.
type inStream struct {
	origin uint64
	// since is the Prev of the stream's first message of origin: the
	// stream delivers every write of origin after it, in seq order.
	since   uint64
	started bool
	// last is when the stream last delivered or applied a message.
	last time.Time
}

// open registers a new push stream. Call close when it ends.
func (in *inbound) open() *inStream {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.streams == nil {
		in.streams = map[*inStream]struct{}{}
	}
	st := &inStream{}
	in.streams[st] = struct{}{}
	return st
}

func (in *inbound) close(st *inStream) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.streams, st)
}

// delivered records that st delivered (or finished applying) a message of
// origin that follows seq prev.
func (in *inbound) delivered(st *inStream, origin, prev uint64, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !st.started || st.origin != origin {
		st.origin, st.since, st.started = origin, prev, true
	}
	st.last = now
}

// claims returns, per origin with a stream that delivered within
// pushFresh of now, the lowest seq such a stream started after.
func (in *inbound) claims(now time.Time) store.Vector {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := store.Vector{}
	for st := range in.streams {
		if !st.started || now.Sub(st.last) > pushFresh {
			continue
		}
		if since, ok := out[st.origin]; !ok || st.since < since {
			out[st.origin] = st.since
		}
	}
	return out
}

// applied records that a push message changed n nodes, at now. It reports
// whether to log a line now, at most one per replicatedLogInterval, and
// then the batches and nodes to report: this one and those not reported
// since the previous line.
func (in *inbound) applied(now time.Time, n int) (batches, nodes int, log bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.batches++
	in.nodes += n
	if !in.logged.IsZero() && now.Sub(in.logged) < replicatedLogInterval {
		return 0, 0, false
	}
	batches, nodes = in.batches, in.nodes
	in.logged, in.batches, in.nodes = now, 0, 0
	return batches, nodes, true
}
