package gossip

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// Fuzz targets for everything a remote member can make this node decode.
// Their seeds run in plain `go test`; `make fuzz` runs each for FUZZTIME.
// FuzzMessages (messages_test.go) covers the delegate entry points.

// FuzzDecodeRecord: DecodeRecord never panics; what it accepts satisfies
// its contract (format >= 1, a key, a port in range), re-encodes to a
// fixed point, and splits into node meta that fits memberlist's limit.
func FuzzDecodeRecord(f *testing.F) {
	full := testRecord("k1", map[string]string{"role": "db", "env": "prod"})
	full.Cert = []byte{1, 2, 3}
	for _, r := range []Record{testRecord("k0", nil), full} {
		b, err := r.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	big := testRecord("k2", map[string]string{})
	for i := range 40 {
		big.Tags[string(rune('a'+i%26))+string(rune('a'+i/26))] = "some-long-tag-value"
	}
	lr, err := splitRecord(big)
	if err != nil || lr.full == nil {
		f.Fatalf("seed record does not need a stub: %v", err)
	}
	f.Add(lr.meta)
	f.Add(lr.full)
	for _, s := range []string{``, `{}`, `null`, `[]`, `{"v":1,"k":"x","p":1}`, `{"v":1,"k":"x","p":65536}`,
		`{"v":2,"k":"x","p":7,"future":{"a":[1,2]}}`, `{"v":1,"k":"x","p":1,"a4":"1.2.3"}`,
		`{"v":1,"k":"x","p":1,"t":{"a":1}}`, `{"v":1,"k":"x","p":1,"crt":"!!"}`, `{"v":1e99,"k":"x","p":1}`,
		"{\"v\":1,\"k\":\"\xff\xfe\",\"p\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			return
		}
		if r.Format < 1 || r.PublicKey == "" || r.ListenPort < 1 || r.ListenPort > 65535 {
			t.Fatalf("accepted a record breaking the contract: %+v", r)
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		r2, err := DecodeRecord(enc)
		if err != nil {
			t.Fatalf("own encoding does not decode: %v\n%s", err, enc)
		}
		enc2, err := r2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
		lr, err := splitRecord(r2)
		if err != nil {
			return // a record too large even without tags: refused, not announced
		}
		if len(lr.meta) > MaxMetaSize {
			t.Fatalf("node meta of %d bytes exceeds %d", len(lr.meta), MaxMetaSize)
		}
		if lr.full != nil {
			stub, err := DecodeRecord(lr.meta)
			if err != nil || stub.Ext != recordDigest(lr.full) || stub.Tags != nil {
				t.Fatalf("stub %s does not name its full record: %v", lr.meta, err)
			}
		}
	})
}

// FuzzWireDecoders: the document, leave and push/pull state decoders never
// panic, respect their size limits and round-trip what they accept.
func FuzzWireDecoders(f *testing.F) {
	f.Add(encodeDocument("policy", []byte("body"))[1:])
	f.Add(encodeLeave("n1", 42)[1:])
	enc := newStateEncoder()
	enc.add(msgDocument, "a", []byte("1"))
	enc.add(msgRecord, "", []byte("{}"))
	enc.add(0x7f, "future", []byte("x"))
	f.Add(enc.bytes()[1:])
	f.Add(binary.AppendUvarint(nil, 1<<62))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{0x80, 0x00, 'x'}) // non-minimal varint
	f.Fuzz(func(t *testing.T, body []byte) {
		if kind, data, err := decodeDocument(body); err == nil {
			if kind == "" || len(kind) > MaxKindLen {
				t.Fatalf("document kind of %d bytes accepted", len(kind))
			}
			k2, d2, err := decodeDocument(encodeDocument(kind, data)[1:])
			if err != nil || k2 != kind || !bytes.Equal(d2, data) {
				t.Fatalf("document round trip: %q %v", k2, err)
			}
		}
		if name, nonce, err := decodeLeave(body); err == nil {
			if name == "" || len(name) > 1<<10 {
				t.Fatalf("leave name of %d bytes accepted", len(name))
			}
			n2, x2, err := decodeLeave(encodeLeave(name, nonce)[1:])
			if err != nil || n2 != name || x2 != nonce {
				t.Fatalf("leave round trip: %q %d %v", n2, x2, err)
			}
		}
		entries, err := decodeState(body)
		total := 0
		for _, e := range entries {
			if len(e.key) > MaxKindLen || len(e.value) > maxStateSize {
				t.Fatalf("state entry beyond limits: key %d value %d", len(e.key), len(e.value))
			}
			total += len(e.key) + len(e.value)
		}
		if total > len(body) {
			t.Fatalf("entries (%d bytes) larger than their message (%d)", total, len(body))
		}
		if err != nil {
			return
		}
		re := newStateEncoder()
		for _, e := range entries {
			if !re.add(e.typ, e.key, e.value) {
				t.Fatal("accepted state does not re-encode")
			}
		}
		back, err := decodeState(re.bytes()[1:])
		if err != nil || !slices.EqualFunc(back, entries, func(a, b stateEntry) bool {
			return a.typ == b.typ && a.key == b.key && bytes.Equal(a.value, b.value)
		}) {
			t.Fatalf("state round trip: %v", err)
		}
	})
}

// FuzzNodeMeta: whatever node meta and name memberlist hands the event
// delegate (it comes from remote alive messages), the member is listed with
// its meta as announced, a full record whose digest it names is resolved,
// and nothing panics.
func FuzzNodeMeta(f *testing.F) {
	lr, err := splitRecord(testRecord("big", map[string]string{"a": string(make([]byte, 600))}))
	if err != nil {
		f.Fatal(err)
	}
	small, _ := testRecord("small", nil).Encode()
	f.Add("big", lr.meta, lr.full)
	f.Add("small", small, []byte(nil))
	f.Add("x", []byte(`{"x":"00"}`), []byte(`{"v":1,"k":"x","p":1}`))
	f.Add("", []byte(nil), []byte(nil))
	cfg := testConfig(f, "fuzz-self")
	cfg.Logger = slog.New(slog.DiscardHandler)
	g, err := New(cfg, testRecord("fuzz-self", nil))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = g.Shutdown() })
	ev := &events{g: g}
	d := &delegate{g: g}
	f.Fuzz(func(t *testing.T, name string, meta, full []byte) {
		if name == "" || name == "fuzz-self" {
			return
		}
		if len(meta) > MaxMetaSize {
			meta = meta[:MaxMetaSize] // memberlist refuses larger meta before the delegate
		}
		ev.NotifyJoin(mlTestNode(name, bytes.Clone(meta)))
		d.NotifyMsg(encodeRecordMsg(bytes.Clone(full)))
		m, ok := member(g, name)
		if !ok || m.State != StateAlive {
			t.Fatalf("joined member %q not listed alive: %+v", name, m)
		}
		want := meta
		if ext := metaExt(meta); ext != "" && ext == recordDigest(full) && len(full) <= maxRecordSize {
			if _, err := DecodeRecord(full); err == nil && metaExt(full) == "" {
				want = full
			}
		}
		if !bytes.Equal(m.Meta, want) && !(len(m.Meta) == 0 && len(want) == 0) {
			t.Fatalf("member meta %q, want %q", m.Meta, want)
		}
		ev.NotifyUpdate(mlTestNode(name, []byte("garbage")))
		ev.NotifyLeave(mlTestNode(name, nil))
		if m, _ := member(g, name); m.State != StateDead {
			t.Fatalf("member after leave: %+v", m)
		}
		g.Forget(name)
		if _, ok := member(g, name); ok {
			t.Fatal("forgotten member still listed")
		}
		_ = d.LocalState(false)
		g.mu.Lock()
		g.gcRecordsLocked(time.Now().Add(2 * recordTTL)) // drop this round's records
		g.mu.Unlock()
	})
}
