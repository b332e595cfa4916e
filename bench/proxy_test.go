package main

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestFrameParser_Methods feeds an HTTP/2 exchange, split at every byte,
// and checks that frames are charged to the methods of their streams.
func TestFrameParser_Methods(t *testing.T) {
	var req, resp bytes.Buffer
	req.WriteString(clientPreface)
	fr := http2.NewFramer(&req, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	headers := func(stream uint32, path string) {
		hb.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: path}, {Name: "content-type", Value: "application/grpc"}} {
			enc.WriteField(f)
		}
		block := hb.Bytes()
		// Split the block to exercise CONTINUATION frames.
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block[:3]})
		fr.WriteContinuation(stream, true, block[3:])
	}
	fr.WriteSettings()
	headers(1, "/replds.Internal/Sync")
	fr.WriteData(1, true, make([]byte, 100))
	headers(3, "/replds.Internal/Push")
	fr.WriteData(3, false, make([]byte, 10))
	headers(5, "/replds.Internal/Sync") // the encoder now indexes the fields
	fr.WriteData(5, true, make([]byte, 100))
	sfr := http2.NewFramer(&resp, nil)
	sfr.WriteSettings()
	sfr.WriteData(1, false, make([]byte, 40))
	sfr.WritePing(false, [8]byte{})

	p := &proxy{stats: map[string]*methodStats{}}
	c := &h2conn{p: p, streams: map[uint32]string{}, dec: hpack.NewDecoder(4096, nil)}
	up := &frameParser{c: c, request: true, preface: len(clientPreface)}
	for _, b := range req.Bytes() {
		up.feed([]byte{b})
	}
	down := &frameParser{c: c}
	down.feed(resp.Bytes())
	if up.broken || down.broken {
		t.Fatal("parser gave up")
	}
	sync, push, conn := p.stats["Sync"], p.stats["Push"], p.stats[connMethod]
	if sync == nil || push == nil || conn == nil {
		t.Fatalf("stats = %v", p.stats)
	}
	if sync.RPCs != 2 || push.RPCs != 1 {
		t.Errorf("RPCs: Sync %d, Push %d; want 2, 1", sync.RPCs, push.RPCs)
	}
	if want := int64(9 + 40); sync.Replies != want {
		t.Errorf("Sync replies = %d bytes, want %d", sync.Replies, want)
	}
	if got, want := sync.Requests+push.Requests+conn.Requests, int64(req.Len()); got != want {
		t.Errorf("request bytes charged = %d, want all %d", got, want)
	}
	if got, want := sync.Replies+push.Replies+conn.Replies, int64(resp.Len()); got != want {
		t.Errorf("reply bytes charged = %d, want all %d", got, want)
	}
}
