package ca

import (
	"encoding/binary"
	"fmt"
)

// The binary bodies are built from a handful of field kinds, all
// big-endian or length-prefixed, so that encoding is deterministic:
//
//	u8        one byte
//	fixed[n]  n raw bytes
//	i64       8 bytes, big-endian two's complement (unix seconds)
//	str       uvarint length, then that many bytes
//
// Decoders reject trailing bytes and anything that does not re-encode to the
// identical bytes (e.g. a non-minimal uvarint), see checkCanonical.

// encoder appends fields to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)      { e.b = append(e.b, v) }
func (e *encoder) fixed(v []byte) { e.b = append(e.b, v...) }
func (e *encoder) i64(v int64)    { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *encoder) uvarint(v uint64) {
	e.b = binary.AppendUvarint(e.b, v)
}
func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// decoder consumes fields; the first failure sticks in err and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("truncated %s", what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8(what string) byte {
	v := d.take(1, what)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) fixed(dst []byte, what string) {
	copy(dst, d.take(len(dst), what))
}

func (d *decoder) i64(what string) int64 {
	v := d.take(8, what)
	if v == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length of %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// str reads a length-prefixed string of at most max bytes.
func (d *decoder) str(max int, what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail("%s longer than %d bytes", what, max)
		return ""
	}
	return string(d.take(int(n), what))
}

// end fails when bytes remain.
func (d *decoder) end(what string) {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after %s", len(d.b), what)
	}
}
