package ca

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"
)

func revokeSerial(t testing.TB, priv ed25519.PrivateKey, s Serial, reason string) *SignedRevocation {
	t.Helper()
	r, err := Revoke(priv, Revocation{Serial: s, Reason: reason, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRevocationRoundTripAndTamper(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	key := nodeKey(t)
	r, err := Revoke(priv, Revocation{PublicKey: key, Reason: "laptop stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if r.BySerial() || r.Issuer != KeyIDOf(pub) || r.Time.IsZero() || r.Time.Nanosecond() != 0 {
		t.Fatalf("Revoke did not fill fields: %+v", r.Revocation)
	}
	p, err := r.PEM()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := r.Marshal()
	for _, in := range [][]byte{p, raw} {
		got, err := ParseRevocation(in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip: got %+v want %+v", got, r)
		}
		if err := got.Verify(cas); err != nil {
			t.Fatal(err)
		}
	}
	tampers := map[string]func(r *SignedRevocation){
		"reason": func(r *SignedRevocation) { r.Reason = "routine" },
		"time":   func(r *SignedRevocation) { r.Time = r.Time.Add(time.Second) },
		"key":    func(r *SignedRevocation) { r.PublicKey[0] ^= 1 },
		"sig":    func(r *SignedRevocation) { r.Signature[0] ^= 1 },
	}
	for name, f := range tampers {
		c := cloneRevocation(r)
		f(c)
		if err := c.Verify(cas); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s: %v", name, err)
		}
	}
	other, _ := newCA(t)
	if err := r.Verify([]ed25519.PublicKey{other}); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("unknown issuer: %v", err)
	}
	// A certificate's PEM is not a revocation.
	cp, _ := issue(t, priv, template(t)).PEM()
	if _, err := ParseRevocation(cp); !errors.Is(err, ErrMalformed) {
		t.Fatalf("certificate parsed as revocation: %v", err)
	}
}

func TestRevokeNeedsExactlyOneTarget(t *testing.T) {
	_, priv := newCA(t)
	s, _ := NewSerial()
	if _, err := Revoke(priv, Revocation{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no target: %v", err)
	}
	if _, err := Revoke(priv, Revocation{Serial: s, PublicKey: nodeKey(t)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two targets: %v", err)
	}
	if _, err := Revoke(priv, Revocation{Serial: s, Reason: "bad\nline"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("control character in reason: %v", err)
	}
	if _, err := Revoke(priv, Revocation{Serial: s, Reason: string(bytes.Repeat([]byte("x"), MaxReasonLen+1))}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long reason: %v", err)
	}
}

func TestRevocationListRevokesBySerialAndKey(t *testing.T) {
	pub, priv := newCA(t)
	l := NewRevocationList([]ed25519.PublicKey{pub})
	a := issue(t, priv, template(t))
	b := issue(t, priv, template(t))
	c := issue(t, priv, template(t))
	bAgain := issue(t, priv, Certificate{Name: "other-name", PublicKey: b.PublicKey}) // same key, new serial

	if l.Revoked(&a.Certificate) || l.Check(&a.Certificate) != nil || l.Version() != 0 {
		t.Fatal("empty list revokes")
	}
	if added, err := l.Add(revokeSerial(t, priv, a.Serial, "")); !added || err != nil {
		t.Fatalf("add serial: %v %v", added, err)
	}
	byKey, err := Revoke(priv, Revocation{PublicKey: b.PublicKey, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if added, err := l.Add(byKey); !added || err != nil {
		t.Fatalf("add key: %v %v", added, err)
	}
	if !l.Revoked(&a.Certificate) || !errors.Is(l.Check(&a.Certificate), ErrRevoked) {
		t.Error("serial revocation not effective")
	}
	if !l.Revoked(&b.Certificate) || !l.Revoked(&bAgain.Certificate) || !l.RevokedKey(b.PublicKey) {
		t.Error("key revocation does not cover every certificate of the key")
	}
	if l.Revoked(&c.Certificate) || l.RevokedKey(a.PublicKey) {
		t.Error("revocation spilled over to another certificate or key")
	}
	if l.Version() != 2 {
		t.Fatalf("version %d", l.Version())
	}
}

func TestRevocationListRejectsForgedAndUnknown(t *testing.T) {
	pub, priv := newCA(t)
	_, strangerPriv := newCA(t)
	l := NewRevocationList([]ed25519.PublicKey{pub})
	s, _ := NewSerial()

	forged := revokeSerial(t, priv, s, "x")
	forged.Serial[0] ^= 1 // signed for another serial
	if added, err := l.Add(forged); added || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged: %v %v", added, err)
	}
	if added, err := l.Add(revokeSerial(t, strangerPriv, s, "")); added || !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("stranger: %v %v", added, err)
	}
	if l.Version() != 0 || l.RevokedSerial(s) || l.RevokedSerial(forged.Serial) {
		t.Fatal("a rejected entry took effect")
	}
	good := revokeSerial(t, priv, s, "")
	n, err := l.AddAll([]*SignedRevocation{forged, good})
	if n != 1 || !errors.Is(err, ErrBadSignature) || !l.RevokedSerial(s) {
		t.Fatalf("AddAll: %d %v", n, err)
	}
}

func TestRevocationListDuplicateIsNoOp(t *testing.T) {
	pub, priv := newCA(t)
	l := NewRevocationList([]ed25519.PublicKey{pub})
	s, _ := NewSerial()
	e := revokeSerial(t, priv, s, "first")
	if added, err := l.Add(e); !added || err != nil {
		t.Fatal(added, err)
	}
	before, _ := l.Encode()
	if added, err := l.Add(e); added || err != nil {
		t.Fatalf("duplicate: %v %v", added, err)
	}
	// The same target revoked again later by the same CA: still one entry.
	later, err := Revoke(priv, Revocation{Serial: s, Reason: "again", Time: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if added, err := l.Add(later); added || err != nil {
		t.Fatalf("re-revocation: %v %v", added, err)
	}
	after, _ := l.Encode()
	if l.Version() != 1 || !bytes.Equal(before, after) {
		t.Fatalf("duplicate changed the list (version %d)", l.Version())
	}
	// Modifying an entry after adding it does not reach into the list.
	e.Reason = "mutated"
	if got := l.Entries()[0].Reason; got != "first" {
		t.Fatalf("list shares memory with the caller: %q", got)
	}
}

func TestRevocationListMergeConverges(t *testing.T) {
	pubA, privA := newCA(t)
	pubB, privB := newCA(t)
	cas := []ed25519.PublicKey{pubA, pubB}
	var all []*SignedRevocation
	for i := range 12 {
		priv := privA
		if i%3 == 0 {
			priv = privB
		}
		s, _ := NewSerial()
		all = append(all, revokeSerial(t, priv, s, ""))
		if i%4 == 0 {
			r, err := Revoke(priv, Revocation{PublicKey: nodeKey(t), Time: t0.Add(time.Duration(i) * time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, r)
		}
	}
	// The same serial revoked twice by A with different times: the earliest wins everywhere.
	dupSerial, _ := NewSerial()
	early, _ := Revoke(privA, Revocation{Serial: dupSerial, Time: t0})
	late, _ := Revoke(privA, Revocation{Serial: dupSerial, Time: t0.Add(time.Hour)})
	all = append(all, late, early)
	want := uint64(len(all) - 1)

	var encodings [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		perm := rng.Perm(len(all))
		// Split the entries over three nodes, merge them pairwise in a random order.
		nodes := []*RevocationList{NewRevocationList(cas), NewRevocationList(cas), NewRevocationList(cas)}
		versions := make([]uint64, len(nodes))
		for i, p := range perm {
			if _, err := nodes[(i+round)%3].Add(all[p]); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			for _, i := range rng.Perm(3) {
				for _, j := range rng.Perm(3) {
					if _, err := nodes[i].Merge(nodes[j]); err != nil {
						t.Fatal(err)
					}
					for k, n := range nodes {
						if n.Version() < versions[k] {
							t.Fatalf("version went back from %d to %d", versions[k], n.Version())
						}
						versions[k] = n.Version()
					}
				}
			}
		}
		for _, n := range nodes {
			if n.Version() != want {
				t.Fatalf("round %d: version %d, want %d", round, n.Version(), want)
			}
			enc, err := n.Encode()
			if err != nil {
				t.Fatal(err)
			}
			encodings = append(encodings, enc)
		}
	}
	for i, e := range encodings {
		if !bytes.Equal(e, encodings[0]) {
			t.Fatalf("encoding %d differs: merging did not converge", i)
		}
	}
	l := NewRevocationList(cas)
	if _, err := l.AddAll(all); err != nil {
		t.Fatal(err)
	}
	for _, e := range l.Entries() {
		if e.Serial == dupSerial && !e.Time.Equal(t0) {
			t.Fatalf("kept the later duplicate (%v)", e.Time)
		}
	}
}

func TestRevocationListEncodeDecode(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	l := NewRevocationList(cas)
	for range 3 {
		s, _ := NewSerial()
		if _, err := l.Add(revokeSerial(t, priv, s, "r")); err != nil {
			t.Fatal(err)
		}
	}
	enc, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := DecodeRevocationList(enc)
	if err != nil {
		t.Fatal(err)
	}
	back := NewRevocationList(cas)
	if n, err := back.AddAll(entries); n != 3 || err != nil {
		t.Fatalf("AddAll: %d %v", n, err)
	}
	enc2, _ := back.Encode()
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encoding differs:\n%s\n%s", enc, enc2)
	}
	// Unknown fields are ignored and newer entry formats are skipped.
	fwd := []byte(`{"format":2,"version":9,"future":{"x":1},"entries":["AgAA"]}`)
	if got, err := DecodeRevocationList(fwd); err != nil || len(got) != 0 {
		t.Fatalf("forward compatible decode: %v %v", got, err)
	}
	for name, in := range map[string]string{
		"not json":     "revoked!",
		"format 0":     `{"entries":[]}`,
		"bad entry":    `{"format":1,"entries":["AQID"]}`,
		"entry type":   `{"format":1,"entries":[1]}`,
		"empty object": `{}`,
	} {
		if _, err := DecodeRevocationList([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	empty, _ := NewRevocationList(cas).Encode()
	if got, err := DecodeRevocationList(empty); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v %v (%s)", got, err, empty)
	}
}

func TestRevocationListConcurrentUse(t *testing.T) {
	pub, priv := newCA(t)
	l := NewRevocationList([]ed25519.PublicKey{pub})
	cert := issue(t, priv, template(t))
	var entries []*SignedRevocation
	for range 50 {
		s, _ := NewSerial()
		entries = append(entries, revokeSerial(t, priv, s, ""))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(entries); i += 4 {
				if _, err := l.Add(entries[i]); err != nil {
					t.Error(err)
				}
				_ = l.Revoked(&cert.Certificate)
				if _, err := l.Encode(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if l.Version() != 50 {
		t.Fatalf("version %d", l.Version())
	}
}
