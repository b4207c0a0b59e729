package gossip

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"testing"
)

func TestMessageRoundTrips(t *testing.T) {
	kind, data, err := decodeDocument(encodeDocument("policy", []byte("body"))[1:])
	if err != nil || kind != "policy" || string(data) != "body" {
		t.Fatalf("document: %q %q %v", kind, data, err)
	}
	name, nonce, err := decodeLeave(encodeLeave("n1", 42)[1:])
	if err != nil || name != "n1" || nonce != 42 {
		t.Fatalf("leave: %q %d %v", name, nonce, err)
	}
	enc := newStateEncoder()
	enc.add(msgDocument, "a", []byte("1"))
	enc.add(msgRecord, "", []byte("{}"))
	enc.add(0x7f, "future", []byte("x"))
	entries, err := decodeState(enc.bytes()[1:])
	if err != nil || len(entries) != 3 || entries[0].key != "a" || string(entries[1].value) != "{}" || entries[2].typ != 0x7f {
		t.Fatalf("state: %+v %v", entries, err)
	}
	if enc.add(msgDocument, "big", make([]byte, maxStateSize)) {
		t.Fatal("state encoder exceeded its limit")
	}
}

func TestMalformedMessagesAreRejected(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<62)
	for name, body := range map[string][]byte{
		"empty":         {},
		"huge kind len": huge,
		"kind past end": {5, 'a'},
		"empty kind":    {0, 'x'},
		"bad varint":    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"kind too long": append(binary.AppendUvarint(nil, MaxKindLen+1), make([]byte, MaxKindLen+1)...),
	} {
		if _, _, err := decodeDocument(body); err == nil {
			t.Errorf("document %s accepted", name)
		}
	}
	for name, body := range map[string][]byte{
		"no nonce":   {1, 'a'},
		"long nonce": {1, 'a', 1, 2, 3, 4, 5, 6, 7, 8, 9},
		"empty name": {0, 1, 2, 3, 4, 5, 6, 7, 8},
		"huge name":  huge,
		"empty":      {},
	} {
		if _, _, err := decodeLeave(body); err == nil {
			t.Errorf("leave %s accepted", name)
		}
	}
	if _, err := decodeState(append([]byte{msgDocument}, huge...)); err == nil {
		t.Error("state with huge key length accepted")
	}
	if _, err := decodeState([]byte{msgDocument, 1, 'a', 10, 'x'}); err == nil {
		t.Error("state with truncated value accepted")
	}
}

// TestGarbageDoesNotPanic feeds crafted and random bytes to every entry
// point memberlist calls with remote data.
func TestGarbageDoesNotPanic(t *testing.T) {
	docs := newMemDocs()
	cfg := testConfig(t, "a")
	cfg.Documents = docs
	cfg.Logger = slog.New(slog.DiscardHandler) // thousands of "dropping" lines
	g := newNodeWithRecord(t, cfg)
	d := &delegate{g: g}
	crafted := [][]byte{
		nil, {}, {0}, {msgDocument}, {msgRecord}, {msgLeave}, {msgState}, {0xff},
		{msgDocument, 0xff}, {msgState, msgDocument, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		append([]byte{msgState, msgRecord, 0}, binary.AppendUvarint(nil, 1<<40)...),
		encodeRecordMsg([]byte("not json")), encodeRecordMsg([]byte(`{"v":1,"k":"x","p":1,"x":"loop"}`)),
		encodeLeave("a", 1), // about ourselves: ignored
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		if len(b) > 0 && rng.IntN(2) == 0 {
			b[0] = byte(rng.UintN(6))
		}
		crafted = append(crafted, b)
	}
	for _, b := range crafted {
		d.NotifyMsg(bytes.Clone(b))
		d.MergeRemoteState(bytes.Clone(b), false)
		d.MergeRemoteState(bytes.Clone(b), true)
	}
	// Still working afterwards.
	if _, ok := member(g, "a"); ok {
		t.Error("node lists itself")
	}
	d.MergeRemoteState(append([]byte{msgState}, stateBytes(msgDocument, "k", []byte("\x01v"))...), false)
	if string(docs.get("k")) != "\x01v" {
		t.Error("valid state not merged after garbage")
	}
}

func stateBytes(typ byte, key string, value []byte) []byte {
	e := newStateEncoder()
	e.add(typ, key, value)
	return e.bytes()[1:]
}

func newNodeWithRecord(t testing.TB, cfg Config) *Gossip {
	t.Helper()
	g, err := New(cfg, testRecord(cfg.NodeName, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

func FuzzMessages(f *testing.F) {
	f.Add([]byte{msgDocument, 1, 'k', 'v'})
	f.Add(encodeLeave("x", 7))
	f.Add(append([]byte{msgState}, stateBytes(msgDocument, "k", []byte("v"))...))
	f.Add(encodeRecordMsg([]byte(`{"v":1,"k":"x","p":1}`)))
	docs := newMemDocs()
	cfg := testConfig(f, "fuzz")
	cfg.Documents = docs
	cfg.Logger = slog.New(slog.DiscardHandler)
	g, err := New(cfg, testRecord("fuzz", nil))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = g.Shutdown() })
	d := &delegate{g: g}
	f.Fuzz(func(t *testing.T, b []byte) {
		d.NotifyMsg(bytes.Clone(b))
		d.MergeRemoteState(bytes.Clone(b), false)
	})
}
