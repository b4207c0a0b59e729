package ca

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCertificateRoundTrip(t *testing.T) {
	pub, priv := newCA(t)
	s := issue(t, priv, template(t))
	if s.Serial.IsZero() || s.Format != CertFormat || s.Issuer != KeyIDOf(pub) {
		t.Fatalf("Issue did not fill serial/format/issuer: %+v", s.Certificate)
	}
	raw, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.PEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte("-----BEGIN "+CertPEMType+"-----\n")) {
		t.Fatalf("PEM form:\n%s", p)
	}
	for name, in := range map[string][]byte{"raw": raw, "pem": p, "pem with leading blank": append([]byte("\n\n"), p...)} {
		got, err := ParseCertificate(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("%s: round trip changed the certificate:\n got %+v\nwant %+v", name, got, s)
		}
		if err := got.Verify([]ed25519.PublicKey{pub}, t0); err != nil {
			t.Fatalf("%s: verify: %v", name, err)
		}
	}
	// Small enough for a node record.
	if len(raw) > 200 {
		t.Fatalf("compact certificate is %d bytes", len(raw))
	}
}

func TestIssueDefaults(t *testing.T) {
	_, priv := newCA(t)
	tmpl := Certificate{Name: "n", PublicKey: nodeKey(t), Tags: map[string]string{"Role": "web"}}
	before := time.Now()
	s := issue(t, priv, tmpl)
	if s.Tags["role"] != "web" || len(s.Tags) != 1 {
		t.Fatalf("tag keys not lower-cased: %v", s.Tags)
	}
	if tmpl.Tags["Role"] != "web" {
		t.Fatal("Issue modified the template's tags")
	}
	if s.Address4.IsValid() {
		t.Fatalf("address %v without a template address", s.Address4)
	}
	wantNB := before.Add(-ClockSkew).Truncate(time.Second)
	if s.NotBefore.Before(wantNB.Add(-time.Second)) || s.NotBefore.After(time.Now()) {
		t.Fatalf("NotBefore %v, want about %v", s.NotBefore, wantNB)
	}
	if got := s.NotAfter.Sub(s.NotBefore); got != DefaultValidity {
		t.Fatalf("validity %v, want %v", got, DefaultValidity)
	}
	if _, err := Issue(priv, Certificate{Name: "x"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no public key: %v", err)
	}
	if _, err := Issue(priv, Certificate{Name: "has space", PublicKey: nodeKey(t)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := Issue(priv, Certificate{Name: "x", PublicKey: nodeKey(t), Address4: netip.MustParseAddr("fd00::1")}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("IPv6 address: %v", err)
	}
	if _, err := Issue(priv, Certificate{Name: "x", PublicKey: nodeKey(t), Tags: map[string]string{"a": "b c"}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad tag value: %v", err)
	}
	if _, err := Issue(priv, Certificate{Name: "x", PublicKey: nodeKey(t), Tags: map[string]string{"A": "1", "a": "2"}}); err == nil {
		t.Fatal("tags differing only in case accepted")
	}
	if _, err := Issue(priv, Certificate{Name: "x", PublicKey: nodeKey(t), NotBefore: t0, NotAfter: t0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty validity: %v", err)
	}
	if _, err := Issue(priv[:10], tmpl); err == nil {
		t.Fatal("short CA key accepted")
	}
}

func TestCertificateTamperedFieldsFailVerification(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	other := nodeKey(t)
	tampers := map[string]func(c *Signed){
		"serial":     func(c *Signed) { c.Serial[0] ^= 1 },
		"name":       func(c *Signed) { c.Name = "db-2" },
		"public key": func(c *Signed) { c.PublicKey = other },
		"tag value":  func(c *Signed) { c.Tags["role"] = "web" },
		"tag added":  func(c *Signed) { c.Tags["admin"] = "yes" },
		"tag gone":   func(c *Signed) { delete(c.Tags, "env") },
		"address":    func(c *Signed) { c.Address4 = netip.MustParseAddr("100.80.3.8") },
		"no address": func(c *Signed) { c.Address4 = netip.Addr{} },
		"not before": func(c *Signed) { c.NotBefore = c.NotBefore.Add(-time.Second) },
		"not after":  func(c *Signed) { c.NotAfter = c.NotAfter.Add(time.Hour) },
		"signature":  func(c *Signed) { c.Signature[5] ^= 0x40 },
	}
	for name, tamper := range tampers {
		t.Run(name, func(t *testing.T) {
			s := issue(t, priv, template(t))
			if err := s.Verify(cas, t0); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tamper(s)
			if err := s.Verify(cas, t0); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered %s: got %v, want ErrBadSignature", name, err)
			}
			// The tampered certificate survives encoding and still fails.
			raw, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseCertificate(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Verify(cas, t0); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("re-parsed tampered %s: got %v", name, err)
			}
		})
	}
}

func TestCertificateEveryByteMatters(t *testing.T) {
	pub, priv := newCA(t)
	raw, err := issue(t, priv, template(t)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wl, err := issue(t, priv, wlTemplate(t)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	everyByteMatters(t, pub, raw)
	everyByteMatters(t, pub, wl)
}

func everyByteMatters(t *testing.T, pub ed25519.PublicKey, raw []byte) {
	t.Helper()
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		s, err := ParseCertificate(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("byte %d: parse error %v does not wrap ErrMalformed", i, err)
			}
			continue
		}
		if err := s.Verify([]ed25519.PublicKey{pub}, t0); err == nil {
			t.Fatalf("byte %d flipped: still verifies", i)
		}
	}
}

func TestCertificateValidityWindow(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	s := issue(t, priv, template(t))
	cases := []struct {
		now  time.Time
		want error
	}{
		{s.NotBefore.Add(-time.Second), ErrNotYetValid},
		{s.NotBefore, nil},
		{s.NotAfter.Add(-time.Second), nil},
		{s.NotAfter, ErrExpired},
		{s.NotAfter.Add(time.Hour), ErrExpired},
	}
	for _, c := range cases {
		err := s.Verify(cas, c.now)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("at %v: got %v, want %v", c.now, err, c.want)
		}
	}
	if !s.ExpiresWithin(s.NotAfter.Add(-time.Hour), time.Hour) || s.ExpiresWithin(s.NotAfter.Add(-time.Hour), 59*time.Minute) {
		t.Error("ExpiresWithin boundary wrong")
	}
	if !s.ExpiresWithin(s.NotAfter.Add(time.Hour), 0) {
		t.Error("an expired certificate does not expire within 0")
	}
}

func TestCertificateIssuerAndRotation(t *testing.T) {
	oldPub, oldPriv := newCA(t)
	newPub, newPriv := newCA(t)
	strangerPub, _ := newCA(t)
	fromOld := issue(t, oldPriv, template(t))
	fromNew := issue(t, newPriv, template(t))

	if err := fromOld.Verify([]ed25519.PublicKey{strangerPub}, t0); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("stranger CA: %v", err)
	}
	if err := fromOld.Verify(nil, t0); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("no CA: %v", err)
	}
	both := []ed25519.PublicKey{newPub, oldPub}
	for _, s := range []*Signed{fromOld, fromNew} {
		if err := s.Verify(both, t0); err != nil {
			t.Fatalf("rotation: %v", err)
		}
	}
	if err := fromNew.Verify([]ed25519.PublicKey{oldPub}, t0); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("new cert with only old CA: %v", err)
	}
	// A certificate claiming the other CA as issuer does not verify.
	forged := *fromNew
	forged.Issuer = KeyIDOf(oldPub)
	if err := forged.Verify(both, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("issuer swapped: %v", err)
	}
}

func TestVerifyFor(t *testing.T) {
	pub, priv := newCA(t)
	tmpl := template(t)
	s := issue(t, priv, tmpl)
	cas := []ed25519.PublicKey{pub}
	if err := s.VerifyFor(cas, tmpl.PublicKey, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyFor(cas, nodeKey(t), t0); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	if err := s.VerifyFor(cas, tmpl.PublicKey, s.NotAfter); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
}

func TestParseCertificateRejects(t *testing.T) {
	_, priv := newCA(t)
	s := issue(t, priv, template(t))
	raw, _ := s.Marshal()
	p, _ := s.PEM()
	revPEM := strings.Replace(string(p), CertPEMType, RevocationPEMType, 2)
	bad := map[string][]byte{
		"empty":          nil,
		"truncated":      raw[:len(raw)-1],
		"trailing":       append(bytes.Clone(raw), 0),
		"format 3":       append([]byte{3}, raw[1:]...),
		"pem wrong type": []byte(revPEM),
		"pem broken":     []byte("-----BEGIN SEGMESH CERTIFICATE-----\n!!!\n"),
		"garbage":        []byte("hello world, this is not a certificate at all, not even close...."),
	}
	// Unsorted tags: swap the two tag entries ("env" < "role") in the body.
	body := raw[:len(raw)-ed25519.SignatureSize]
	i := bytes.Index(body, []byte("\x03env\x04prod"))
	j := bytes.Index(body, []byte("\x04role\x02db"))
	if i < 0 || j < 0 {
		t.Fatalf("tag encoding not as expected: %x", body)
	}
	swapped := bytes.Clone(body[:i])
	swapped = append(swapped, body[j:]...)
	swapped = append(swapped, body[i:j]...)
	bad["unsorted tags"] = append(swapped, s.Signature...)
	// A non-minimal uvarint for the name length.
	k := bytes.Index(body, []byte("\x04db-1"))
	nonMin := append(append(bytes.Clone(body[:k]), 0x84, 0x00), body[k+1:]...)
	bad["non-minimal length"] = append(nonMin, s.Signature...)

	for name, in := range bad {
		if _, err := ParseCertificate(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}
