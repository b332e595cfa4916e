package main

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestFrameParser_Methods feeds an HTTP/2 exchange whose streams are
// interleaved, the requests split at every byte, and checks that every
// frame is charged to the method of its own stream: each method's RPCs,
// request bytes and reply bytes exactly.
func TestFrameParser_Methods(t *testing.T) {
	want := map[string]*methodStats{}
	tally := func(method string) *methodStats {
		if want[method] == nil {
			want[method] = &methodStats{}
		}
		return want[method]
	}
	// sent runs write and adds the bytes it appended to buf to the
	// requests or replies of method.
	sent := func(buf *bytes.Buffer, method string, request bool, write func()) {
		n := buf.Len()
		write()
		if request {
			tally(method).Requests += int64(buf.Len() - n)
		} else {
			tally(method).Replies += int64(buf.Len() - n)
		}
	}

	var req, resp bytes.Buffer
	fr := http2.NewFramer(&req, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	// headers opens stream with a request for path, its block split to
	// exercise CONTINUATION frames.
	headers := func(stream uint32, method string) {
		hb.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/replds.Internal/" + method}, {Name: "content-type", Value: "application/grpc"}} {
			enc.WriteField(f)
		}
		block := hb.Bytes()
		tally(method).RPCs++
		sent(&req, method, true, func() {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block[:3]})
			fr.WriteContinuation(stream, true, block[3:])
		})
	}
	data := func(stream uint32, method string, end bool, n int) {
		sent(&req, method, true, func() { fr.WriteData(stream, end, make([]byte, n)) })
	}
	sent(&req, connMethod, true, func() { req.WriteString(clientPreface) })
	sent(&req, connMethod, true, func() { fr.WriteSettings() })
	// Every DATA frame follows the header block of another stream, and
	// the streams carry different sizes, so that a frame charged to the
	// wrong stream changes the figures.
	headers(1, "Sync")
	headers(3, "Push")
	data(1, "Sync", false, 100)
	data(3, "Push", false, 10)
	data(1, "Sync", false, 7)
	headers(5, "Sync") // the encoder now indexes the fields
	data(3, "Push", false, 1000)
	sent(&req, connMethod, true, func() { fr.WriteWindowUpdate(0, 4096) })
	data(1, "Sync", true, 50)
	data(5, "Sync", false, 3)
	data(3, "Push", true, 20)
	data(5, "Sync", true, 30)

	sfr := http2.NewFramer(&resp, nil)
	var rb bytes.Buffer
	renc := hpack.NewEncoder(&rb)
	renc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	sent(&resp, connMethod, false, func() { sfr.WriteSettings() })
	sent(&resp, "Push", false, func() {
		sfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: rb.Bytes(), EndHeaders: true})
	})
	sent(&resp, "Sync", false, func() { sfr.WriteData(1, false, make([]byte, 40)) })
	sent(&resp, "Push", false, func() { sfr.WriteData(3, true, make([]byte, 5)) })
	sent(&resp, "Sync", false, func() { sfr.WriteData(5, false, make([]byte, 400)) })
	sent(&resp, connMethod, false, func() { sfr.WritePing(false, [8]byte{}) })
	sent(&resp, "Sync", false, func() { sfr.WriteData(1, true, make([]byte, 4)) })

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
	if got, exp := slices.Sorted(maps.Keys(p.stats)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, exp) {
		t.Errorf("methods charged = %q, want %q", got, exp)
	}
	for _, m := range slices.Sorted(maps.Keys(want)) {
		got, exp := p.stats[m], want[m]
		if got == nil {
			continue
		}
		if got.RPCs != exp.RPCs {
			t.Errorf("%s: %d RPCs, want %d", m, got.RPCs, exp.RPCs)
		}
		if got.Requests != exp.Requests {
			t.Errorf("%s: %d request bytes, want %d", m, got.Requests, exp.Requests)
		}
		if got.Replies != exp.Replies {
			t.Errorf("%s: %d reply bytes, want %d", m, got.Replies, exp.Replies)
		}
	}
}
