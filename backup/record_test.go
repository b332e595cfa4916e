package backup

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/replds/replds/store"
)

func encodeRecords(nodes []store.Node) []byte {
	b := fileHeader()
	for i := range nodes {
		b = appendRecordHead(b, &nodes[i])
		b = append(b, nodes[i].Data...)
	}
	return appendTrailer(b, uint64(len(nodes)))
}

func decodeRecords(b []byte) ([]store.Node, error) {
	d := decoder{r: bufio.NewReader(bytes.NewReader(b))}
	if err := d.readHeader(); err != nil {
		return nil, err
	}
	var out []store.Node
	for {
		var n store.Node
		more, err := d.next(&n)
		if err != nil {
			return out, err
		}
		if !more {
			return out, nil
		}
		out = append(out, n)
	}
}

func TestRecords_RoundTrip(t *testing.T) {
	nodes := []store.Node{
		{Path: "/a", Meta: store.Meta{Version: 1 << 60, Origin: 3, Seq: 9, Size: 3}, Data: []byte("abc")},
		{Path: "/b", Meta: store.Meta{Version: 2, Origin: 1<<64 - 1, Seq: 1, Deleted: true}},
		{Path: "/c/d", Meta: store.Meta{Version: 3}},
	}
	b := encodeRecords(nodes)
	got, err := decodeRecords(b)
	if err != nil || len(got) != len(nodes) {
		t.Fatalf("decode = %d nodes, %v", len(got), err)
	}
	for i := range nodes {
		if got[i].Path != nodes[i].Path || got[i].Meta != nodes[i].Meta || !bytes.Equal(got[i].Data, nodes[i].Data) {
			t.Errorf("node %d = %+v, want %+v", i, got[i], nodes[i])
		}
	}
	// A trailer that does not count the records read.
	bad := appendTrailer(b[:len(b)-2], 2)
	if _, err := decodeRecords(bad); err == nil {
		t.Error("decode with a wrong trailer count succeeded")
	}
	// Every truncation is an error, never a shorter stream.
	for n := range len(b) {
		if _, err := decodeRecords(b[:n]); err == nil {
			t.Errorf("decode of %d of %d bytes succeeded", n, len(b))
		}
	}
}

// FuzzDecoder checks that no input makes the decoder panic or allocate
// beyond its limits, and that what it accepts survives a round trip.
func FuzzDecoder(f *testing.F) {
	f.Add(encodeRecords(nil))
	f.Add(encodeRecords([]store.Node{{Path: "/a", Meta: store.Meta{Version: 1, Size: 1}, Data: []byte("x")}}))
	f.Add(append(fileHeader(), tagRecord, 0xff, 0xff, 0xff, 0xff, 0x0f))
	// A record claiming 1 GiB of data in a short stream.
	f.Add(append(fileHeader(), tagRecord, 2, '/', 'a', 1, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x04, 'x'))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := decodeRecords(b)
		if err != nil {
			return
		}
		again, err := decodeRecords(encodeRecords(nodes))
		if err != nil || len(again) != len(nodes) {
			t.Fatalf("re-decode of %d accepted nodes = %d, %v", len(nodes), len(again), err)
		}
		for i := range nodes {
			if again[i].Path != nodes[i].Path || again[i].Meta != nodes[i].Meta || !bytes.Equal(again[i].Data, nodes[i].Data) {
				t.Errorf("node %d re-decodes as %+v, want %+v", i, again[i], nodes[i])
			}
		}
	})
}
