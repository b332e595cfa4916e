package main

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2/hpack"
)

// proxy is a TCP proxy in front of one server's gRPC port. The server
// advertises the proxy's address to its peers (--advertise-addr) and the
// other servers are given it as --peer, so every byte one server sends
// another over gRPC crosses exactly one proxy, while clients (the bench,
// replds store, replds pull) talk to the server directly and are not
// counted.
//
// Besides the raw byte count, the proxy follows the HTTP/2 framing of each
// connection (plaintext h2c, which is what gRPC without TLS speaks): it
// decodes the request headers the dialing server sends to learn the RPC
// method of every stream, and charges each frame, header included, to the
// method of its stream, or to "(connection)" for stream 0 (SETTINGS, PING,
// connection WINDOW_UPDATE, GOAWAY) and the client preface. Counting RPCs
// by method is what turns bytes into bytes per sync round without relying
// on anything the servers report themselves.
type proxy struct {
	ln     net.Listener
	target atomic.Pointer[string]

	// total counts every byte copied, both ways, parsed or not.
	total atomic.Int64

	mu    sync.Mutex
	stats map[string]*methodStats // guarded by mu
	conns map[net.Conn]struct{}   // guarded by mu
	done  bool                    // guarded by mu
	wg    sync.WaitGroup
}

// methodStats counts the traffic of one RPC method.
type methodStats struct {
	RPCs     int64 `json:"rpcs"`
	Requests int64 `json:"request_bytes"`  // dialer -> listener
	Replies  int64 `json:"response_bytes"` // listener -> dialer
}

// connMethod names the traffic that belongs to no stream.
const connMethod = "(connection)"

// newProxy listens on a free loopback port. Call setTarget before peers
// connect and close when done.
func newProxy() (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, stats: map[string]*methodStats{}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setTarget(addr string) { p.target.Store(&addr) }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// track registers c for close; false once the proxy is closing.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// serve copies one connection both ways until either side closes.
func (p *proxy) serve(down net.Conn) {
	defer p.untrack(down)
	defer down.Close()
	t := p.target.Load()
	if t == nil {
		return
	}
	up, err := net.Dial("tcp", *t)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	defer up.Close()
	c := &h2conn{p: p, streams: map[uint32]string{}, dec: hpack.NewDecoder(4096, nil)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pipe(up, down, &frameParser{c: c, request: true, preface: len(clientPreface)})
		// Half-close so the server sees the end of the requests.
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	p.pipe(down, up, &frameParser{c: c})
	down.Close()
	up.Close()
	wg.Wait()
}

// pipe copies src to dst, feeding the parser before each write so that a
// stream's method is known before its reply can come back.
func (p *proxy) pipe(dst, src net.Conn, fp *frameParser) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.total.Add(int64(n))
			fp.feed(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// snapshot returns the byte total and a copy of the per-method counters.
func (p *proxy) snapshot() (int64, map[string]methodStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]methodStats, len(p.stats))
	for k, v := range p.stats {
		out[k] = *v
	}
	return p.total.Load(), out
}

// close stops accepting, closes every connection and waits for the copiers.
func (p *proxy) close() {
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// h2conn is the HTTP/2 state shared by the two directions of a connection.
type h2conn struct {
	p *proxy
	// streams maps a stream id to its method; written by the request
	// direction, read by both. Ids are never forgotten: a bench run opens
	// a few thousand streams per connection at most.
	mu      sync.Mutex
	streams map[uint32]string
	// dec decodes the dialer's header blocks (request direction only).
	dec *hpack.Decoder
}

func (c *h2conn) method(stream uint32) string {
	if stream == 0 {
		return connMethod
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.streams[stream]; ok {
		return m
	}
	return "(unknown)"
}

func (c *h2conn) charge(method string, request bool, n int64, newRPC bool) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats[method]
	if st == nil {
		st = &methodStats{}
		p.stats[method] = st
	}
	if newRPC {
		st.RPCs++
	}
	if request {
		st.Requests += n
	} else {
		st.Replies += n
	}
}

// clientPreface starts every HTTP/2 connection, sent by the dialer.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 frame types and flags used here (RFC 9113, section 6).
const (
	frameHeaders      = 0x1
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	flagPriority      = 0x20
	frameHeaderLen    = 9
)

// frameParser follows the frames of one direction of a connection as
// chunks of bytes arrive. It keeps a frame's payload only for HEADERS and
// CONTINUATION frames of the request direction.
type frameParser struct {
	c       *h2conn
	request bool
	// preface is how many bytes of the client preface are still to skip.
	preface int
	// hdr accumulates the 9-byte frame header.
	hdr [frameHeaderLen]byte
	nh  int
	// remaining is the payload left in the current frame; keep says
	// whether it is collected into payload.
	remaining int
	keep      bool
	payload   []byte
	// Current frame.
	typ, flags byte
	stream     uint32
	// block collects a header block across CONTINUATION frames, and
	// blockBytes the size of its frames, charged once the block names the
	// stream's method.
	block       []byte
	blockStream uint32
	blockBytes  int64
	// broken stops parsing after a framing error (bytes are still counted
	// in the proxy total).
	broken bool
}

func (f *frameParser) feed(b []byte) {
	if f.broken {
		return
	}
	if f.preface > 0 {
		n := min(f.preface, len(b))
		f.preface -= n
		f.c.charge(connMethod, f.request, int64(n), false)
		b = b[n:]
	}
	for len(b) > 0 {
		if f.remaining == 0 && f.nh < frameHeaderLen {
			n := copy(f.hdr[f.nh:], b)
			f.nh += n
			b = b[n:]
			if f.nh < frameHeaderLen {
				return
			}
			length := int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			f.typ, f.flags = f.hdr[3], f.hdr[4]
			f.stream = binary.BigEndian.Uint32(f.hdr[5:9]) & 0x7fffffff
			f.remaining = length
			f.keep = f.request && (f.typ == frameHeaders || f.typ == frameContinuation)
			f.payload = f.payload[:0]
			if length == 0 {
				f.endFrame()
			}
			continue
		}
		n := min(f.remaining, len(b))
		if f.keep {
			f.payload = append(f.payload, b[:n]...)
		}
		f.remaining -= n
		b = b[n:]
		if f.remaining == 0 {
			f.endFrame()
		}
	}
}

// endFrame accounts a complete frame and decodes request headers.
func (f *frameParser) endFrame() {
	size := int64(frameHeaderLen + len(f.payload))
	if !f.keep {
		size = int64(frameHeaderLen) + int64(int(f.hdr[0])<<16|int(f.hdr[1])<<8|int(f.hdr[2]))
	}
	f.nh = 0
	if !f.keep {
		f.c.charge(f.c.method(f.stream), f.request, size, false)
		return
	}
	frag, err := f.fragment()
	if err != nil {
		f.broken = true
		return
	}
	if f.typ == frameHeaders {
		f.block = append(f.block[:0], frag...)
		f.blockStream = f.stream
		f.blockBytes = 0
	} else {
		f.block = append(f.block, frag...)
	}
	f.blockBytes += size
	if f.flags&flagEndHeaders == 0 {
		return
	}
	method := "(unknown)"
	fields, err := f.c.dec.DecodeFull(f.block)
	if err != nil {
		f.broken = true
	}
	for _, hf := range fields {
		if hf.Name == ":path" {
			method = hf.Value[strings.LastIndexByte(hf.Value, '/')+1:]
		}
	}
	f.c.mu.Lock()
	known, seen := f.c.streams[f.blockStream]
	if !seen {
		f.c.streams[f.blockStream] = method
		known = method
	}
	f.c.mu.Unlock()
	f.c.charge(known, f.request, f.blockBytes, !seen)
}

var errBadFrame = errors.New("bad HTTP/2 frame")

// fragment strips padding and priority from a HEADERS payload.
func (f *frameParser) fragment() ([]byte, error) {
	p := f.payload
	if f.typ != frameHeaders {
		return p, nil
	}
	pad := 0
	if f.flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, errBadFrame
		}
		pad = int(p[0])
		p = p[1:]
	}
	if f.flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errBadFrame
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, errBadFrame
	}
	return p[:len(p)-pad], nil
}
