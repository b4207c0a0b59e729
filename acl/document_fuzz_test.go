package acl

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

// FuzzDecodeDocument feeds arbitrary bytes to DecodeDocument (what a peer
// sends through gossip and what state_dir holds): it never panics, every
// error wraps ErrBadDocument, and an accepted document has a version >= 1,
// a hash matching its content, a policy that compiles, and an encoding that
// decodes to the same document. Since a fuzzer rarely guesses a SHA-256,
// each input that is JSON is also re-sent with its hash fixed, so the
// content reaches the policy parser.
func FuzzDecodeDocument(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, d := range []*Document{
		NewDocument(example, 3, "alice@db-1", t0),
		NewDocument([]byte("mode: audit\n"), 1, "", t0),
		{Format: 1, Version: 1, Hash: Hash(nil)},
		{Format: 7, Version: 1 << 63, Hash: Hash([]byte("rules: [\n")), Content: "rules: [\n", Signature: "x"},
	} {
		b, err := json.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{``, `null`, `{}`, `[]`, `{"v":1,"version":-1}`, `{"v":1,"version":1e30}`,
		`{"v":1,"version":1,"hash":"sha256:00","content":"x"}`, `{"v":1,"version":1,"time":"yesterday"}`,
		`{"v":1,"version":1,"content":"\ud800"}`} {
		f.Add([]byte(s))
	}
	self := polMember("self", "100.80.0.1", "fd5e::1", map[string]string{"role": "a"})
	peers := []Member{polMember("p1", "100.80.0.2", "fd5e::2", map[string]string{"role": "b"})}
	check := func(t *testing.T, b []byte) {
		d, p, err := DecodeDocument(b)
		if err != nil {
			if d != nil || p != nil {
				t.Fatal("document or policy returned with an error")
			}
			if !errors.Is(err, ErrBadDocument) {
				t.Fatalf("error does not wrap ErrBadDocument: %v", err)
			}
			return
		}
		if d == nil || p == nil || d.Format < 1 || d.Version < 1 || d.Hash != Hash([]byte(d.Content)) {
			t.Fatalf("accepted a document breaking the contract: %+v", d)
		}
		if d.Newer(d) {
			t.Fatal("a document is newer than itself")
		}
		polCheckDesired(t, Compile(p, self, peers))
		enc, err := d.Encode()
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		d2, _, err := DecodeDocument(enc)
		if err != nil {
			t.Fatalf("own encoding does not decode: %v", err)
		}
		if d2.Version != d.Version || d2.Hash != d.Hash || d2.Content != d.Content || !d2.Time.Equal(d.Time) ||
			d2.AppliedBy != d.AppliedBy || d2.Signature != d.Signature {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", d, d2)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, b)
		var d Document
		if json.Unmarshal(b, &d) != nil {
			return
		}
		d.Hash = Hash([]byte(d.Content))
		if fixed, err := json.Marshal(&d); err == nil {
			check(t, fixed)
		}
	})
}
