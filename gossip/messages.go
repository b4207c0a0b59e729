package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of segmesh's memberlist user messages and push/pull state.
// The first byte is the message type; unknown types are dropped.
//
//	document: 0x01 uvarint(len kind) kind data...
//	record:   0x02 full-record-bytes...
//	leave:    0x03 uvarint(len name) name nonce(8 bytes, big endian)
//	state:    0x04 entry*   entry = type(1) uvarint(len key) key uvarint(len value) value
//
// A state entry's type is msgDocument (key = kind, value = data) or
// msgRecord (key empty, value = full record); other entry types are skipped
// so that a later version can add some.
const (
	msgDocument byte = 0x01
	msgRecord   byte = 0x02
	msgLeave    byte = 0x03
	msgState    byte = 0x04
)

// Size limits.
const (
	// MaxKindLen is the longest document kind.
	MaxKindLen = 255
	// MaxDocumentSize is the largest document Publish accepts (memberlist
	// caps a stream message and the whole push/pull state at 20 MiB).
	MaxDocumentSize = 8 << 20
	// maxBroadcastSize is the largest message sent through the UDP gossip
	// queue; larger ones go over TCP (SendReliable).
	maxBroadcastSize = 1000
	// maxStateSize bounds the push/pull state this node sends.
	maxStateSize = 16 << 20
)

var errTruncated = errors.New("truncated message")

func appendBlob(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeDocument(kind string, data []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(kind)+len(data))
	b = append(b, msgDocument)
	b = appendBlob(b, []byte(kind))
	return append(b, data...)
}

// decodeDocument parses a document message body (after the type byte).
// kind and data alias body.
func decodeDocument(body []byte) (kind string, data []byte, err error) {
	r := reader{b: body}
	k, err := r.blob(MaxKindLen)
	if err != nil {
		return "", nil, fmt.Errorf("document kind: %w", err)
	}
	if len(k) == 0 {
		return "", nil, errors.New("document with empty kind")
	}
	return string(k), r.b, nil
}

func encodeRecordMsg(full []byte) []byte {
	return append([]byte{msgRecord}, full...)
}

func encodeLeave(name string, nonce uint64) []byte {
	b := []byte{msgLeave}
	b = appendBlob(b, []byte(name))
	return binary.BigEndian.AppendUint64(b, nonce)
}

func decodeLeave(body []byte) (name string, nonce uint64, err error) {
	r := reader{b: body}
	n, err := r.blob(1 << 10)
	if err != nil {
		return "", 0, fmt.Errorf("leave name: %w", err)
	}
	if len(n) == 0 || len(r.b) != 8 {
		return "", 0, errors.New("malformed leave intent")
	}
	return string(n), binary.BigEndian.Uint64(r.b), nil
}

// stateEntry is one item of push/pull state.
type stateEntry struct {
	typ   byte
	key   string
	value []byte
}

// stateEncoder builds a state message up to maxStateSize.
type stateEncoder struct {
	b []byte
}

func newStateEncoder() *stateEncoder { return &stateEncoder{b: []byte{msgState}} }

// add appends an entry; it returns false (and adds nothing) when the entry
// would push the state beyond maxStateSize.
func (e *stateEncoder) add(typ byte, key string, value []byte) bool {
	need := 1 + 2*binary.MaxVarintLen64 + len(key) + len(value)
	if len(e.b)+need > maxStateSize {
		return false
	}
	e.b = append(e.b, typ)
	e.b = appendBlob(e.b, []byte(key))
	e.b = appendBlob(e.b, value)
	return true
}

func (e *stateEncoder) bytes() []byte { return e.b }

// decodeState parses a state message body (after the type byte). Entries
// alias body. On a malformed tail it returns the entries before it and an
// error.
func decodeState(body []byte) ([]stateEntry, error) {
	r := reader{b: body}
	var out []stateEntry
	for len(r.b) > 0 {
		typ := r.b[0]
		r.b = r.b[1:]
		k, err := r.blob(MaxKindLen)
		if err != nil {
			return out, fmt.Errorf("state entry key: %w", err)
		}
		v, err := r.blob(maxStateSize)
		if err != nil {
			return out, fmt.Errorf("state entry value: %w", err)
		}
		out = append(out, stateEntry{typ: typ, key: string(k), value: v})
	}
	return out, nil
}

// reader consumes length-prefixed fields with bounds checks.
type reader struct {
	b []byte
}

func (r *reader) blob(max int) ([]byte, error) {
	n, w := binary.Uvarint(r.b)
	if w <= 0 {
		return nil, errTruncated
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("length %d exceeds %d", n, max)
	}
	r.b = r.b[w:]
	if uint64(len(r.b)) < n {
		return nil, errTruncated
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}
