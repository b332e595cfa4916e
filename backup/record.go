package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/store"
)

// magic starts every node file's record stream; the format byte follows.
const magic = "RPLDSBK\x00"

// Record tags.
const (
	tagEnd    = 0x00
	tagRecord = 0x01
)

const flagDeleted = 0x01

// fileHeader is the start of a record stream.
func fileHeader() []byte { return append([]byte(magic), FormatVersion) }

// appendRecordHead appends n's encoding up to its data, which the caller
// writes next (so that large data is not copied).
func appendRecordHead(b []byte, n *store.Node) []byte {
	b = append(b, tagRecord)
	b = binary.AppendUvarint(b, uint64(len(n.Path)))
	b = append(b, n.Path...)
	b = binary.AppendUvarint(b, n.Version)
	b = binary.AppendUvarint(b, n.Origin)
	b = binary.AppendUvarint(b, n.Seq)
	var flags byte
	if n.Deleted {
		flags |= flagDeleted
	}
	b = append(b, flags)
	return binary.AppendUvarint(b, uint64(len(n.Data)))
}

// appendTrailer appends the end of a record stream of count records.
func appendTrailer(b []byte, count uint64) []byte {
	return binary.AppendUvarint(append(b, tagEnd), count)
}

// errFormat is the cause of a decode failure (wrapped with ErrCorrupt by
// the file reader, which names the file).
var errFormat = errors.New("bad record stream")

// decoder reads a record stream.
type decoder struct {
	r     *bufio.Reader
	count uint64
	done  bool
}

// readHeader checks the stream's header.
func (d *decoder) readHeader() error {
	var h [len(magic) + 1]byte
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		return fmt.Errorf("%w: header: %v", errFormat, eofIsUnexpected(err))
	}
	if string(h[:len(magic)]) != magic {
		return fmt.Errorf("%w: not a node file", errFormat)
	}
	if h[len(magic)] < 1 || h[len(magic)] > FormatVersion {
		return fmt.Errorf("%w: format %d (this version reads 1 to %d)", errFormat, h[len(magic)], FormatVersion)
	}
	return nil
}

// next decodes the next record into n, reusing nothing: n.Data is a new
// slice. It returns false at the trailer, whose count it checks.
func (d *decoder) next(n *store.Node) (bool, error) {
	tag, err := d.r.ReadByte()
	if err != nil {
		return false, fmt.Errorf("%w: record %d: %v", errFormat, d.count+1, eofIsUnexpected(err))
	}
	switch tag {
	case tagEnd:
		c, err := d.uvarint()
		if err != nil {
			return false, err
		}
		if c != d.count {
			return false, fmt.Errorf("%w: trailer counts %d records, read %d", errFormat, c, d.count)
		}
		d.done = true
		return false, nil
	case tagRecord:
	default:
		return false, fmt.Errorf("%w: record %d: tag %#x", errFormat, d.count+1, tag)
	}
	d.count++
	pathLen, err := d.uvarint()
	if err != nil {
		return false, err
	}
	if pathLen == 0 || pathLen > nodepath.MaxLen {
		return false, fmt.Errorf("%w: record %d: path length %d", errFormat, d.count, pathLen)
	}
	p := make([]byte, pathLen)
	if _, err := io.ReadFull(d.r, p); err != nil {
		return false, fmt.Errorf("%w: record %d: %v", errFormat, d.count, eofIsUnexpected(err))
	}
	*n = store.Node{Path: string(p)}
	if n.Version, err = d.uvarint(); err != nil {
		return false, err
	}
	if n.Origin, err = d.uvarint(); err != nil {
		return false, err
	}
	if n.Seq, err = d.uvarint(); err != nil {
		return false, err
	}
	flags, err := d.r.ReadByte()
	if err != nil {
		return false, fmt.Errorf("%w: record %d: %v", errFormat, d.count, eofIsUnexpected(err))
	}
	if flags&^flagDeleted != 0 {
		return false, fmt.Errorf("%w: record %d: flags %#x", errFormat, d.count, flags)
	}
	n.Deleted = flags&flagDeleted != 0
	dataLen, err := d.uvarint()
	if err != nil {
		return false, err
	}
	if dataLen > MaxNodeData {
		return false, fmt.Errorf("%w: record %d: data length %d", errFormat, d.count, dataLen)
	}
	n.Size = uint32(dataLen)
	if dataLen > 0 {
		if n.Data, err = readData(d.r, int64(dataLen)); err != nil {
			return false, fmt.Errorf("%w: record %d: %v", errFormat, d.count, err)
		}
	}
	return true, nil
}

// readData reads n bytes of data. Beyond a megabyte it lets the buffer grow
// with what arrives, so that a corrupt length does not allocate up to
// MaxNodeData before the stream ends.
func readData(r io.Reader, n int64) ([]byte, error) {
	if n <= 1<<20 {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, eofIsUnexpected(err)
	}
	var buf bytes.Buffer
	buf.Grow(1 << 20)
	if _, err := io.CopyN(&buf, r, n); err != nil {
		return nil, eofIsUnexpected(err)
	}
	return buf.Bytes(), nil
}

func (d *decoder) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		return 0, fmt.Errorf("%w: record %d: %v", errFormat, d.count, eofIsUnexpected(err))
	}
	return v, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
