package ca

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"
)

// fuzzCA is a fixed CA so that fuzzed inputs derived from seeds keep a
// meaningful issuer.
var fuzzCA = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func FuzzParseCertificate(f *testing.F) {
	tmpl := template(f)
	tmpl.PublicKey = [32]byte{1, 2, 3}
	s, err := Issue(fuzzCA, tmpl)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := s.Marshal()
	p, _ := s.PEM()
	bare, _ := Issue(fuzzCA, Certificate{Name: "n", PublicKey: [32]byte{9}, NotBefore: t0, NotAfter: t0.Add(time.Hour)})
	bareRaw, _ := bare.Marshal()
	wl := tmpl
	wl.WorkloadTags = []TagPair{{"svc", "api"}, {"svc", "worker"}, {"tier", "batch"}}
	wlCert, err := Issue(fuzzCA, wl)
	if err != nil {
		f.Fatal(err)
	}
	wlRaw, _ := wlCert.Marshal()
	f.Add(wlRaw)
	f.Add([]byte{CertFormatWorkloadTags})
	f.Add(raw)
	f.Add(p)
	f.Add(bareRaw)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte("-----BEGIN SEGMESH CERTIFICATE-----\n-----END SEGMESH CERTIFICATE-----\n"))
	cas := []ed25519.PublicKey{fuzzCA.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCertificate(data)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to itself and can be verified.
		again, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed certificate does not encode: %v", err)
		}
		c2, err := ParseCertificate(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		again2, _ := c2.Marshal()
		if !bytes.Equal(again, again2) {
			t.Fatal("encoding not stable")
		}
		// Workload tags: only in format 2, sorted, never a node tag key.
		if (c.Format == CertFormatWorkloadTags) != (len(c.WorkloadTags) > 0) {
			t.Fatalf("format %d with %d workload tags", c.Format, len(c.WorkloadTags))
		}
		for i, p := range c.WorkloadTags {
			if _, set := c.Tags[p.Key]; set || (i > 0 && compareTagPairs(c.WorkloadTags[i-1], p) >= 0) {
				t.Fatalf("workload tags %v with node tags %v", c.WorkloadTags, c.Tags)
			}
			if !c.AllowsWorkloadTag(p.Key, p.Value) {
				t.Fatalf("%s listed but not allowed", p)
			}
		}
		_ = c.Verify(cas, t0)
		_ = c.Info()
	})
}

func FuzzDecodeRevocationList(f *testing.F) {
	cas := []ed25519.PublicKey{fuzzCA.Public().(ed25519.PublicKey)}
	l := NewRevocationList(cas)
	r1, _ := Revoke(fuzzCA, Revocation{Serial: Serial{1}, Reason: "test", Time: t0})
	r2, _ := Revoke(fuzzCA, Revocation{PublicKey: [32]byte{2}, Time: t0})
	if _, err := l.AddAll([]*SignedRevocation{r1, r2}); err != nil {
		f.Fatal(err)
	}
	enc, _ := l.Encode()
	empty, _ := NewRevocationList(cas).Encode()
	f.Add(enc)
	f.Add(empty)
	f.Add([]byte(`{"format":1,"entries":["AQID"]}`))
	f.Add([]byte(`{"format":3,"x":[1,2],"entries":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := DecodeRevocationList(data)
		if err != nil {
			return
		}
		l := NewRevocationList(cas)
		n, _ := l.AddAll(entries)
		if uint64(n) != l.Version() {
			t.Fatalf("added %d, version %d", n, l.Version())
		}
		enc, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRevocationList(enc)
		if err != nil {
			t.Fatalf("own encoding does not decode: %v", err)
		}
		l2 := NewRevocationList(cas)
		if n2, err := l2.AddAll(back); err != nil || uint64(n2) != l.Version() {
			t.Fatalf("round trip: %d %v", n2, err)
		}
	})
}
