package ca

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// More fuzz targets for what the daemon reads from files, the control
// socket or the mesh: single revocations, signed policy files, CA public key
// files and CA private keys. Seeds run in plain `go test`.

// FuzzParseRevocation: never panics, errors wrap ErrMalformed, and what
// parses is canonical (its compact form is stable and parses back).
func FuzzParseRevocation(f *testing.F) {
	r1, _ := Revoke(fuzzCA, Revocation{Serial: Serial{1}, Reason: "key compromise", Time: t0})
	r2, _ := Revoke(fuzzCA, Revocation{PublicKey: [32]byte{2}, Time: t0})
	for _, r := range []*SignedRevocation{r1, r2} {
		raw, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		p, _ := r.PEM()
		f.Add(raw)
		f.Add(p)
	}
	f.Add([]byte{})
	f.Add([]byte{RevocationFormat})
	f.Add([]byte("-----BEGIN SEGMESH REVOCATION-----\nAQ==\n-----END SEGMESH REVOCATION-----\n"))
	cas := []ed25519.PublicKey{fuzzCA.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocation(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(r.Reason) > MaxReasonLen {
			t.Fatalf("reason of %d bytes accepted", len(r.Reason))
		}
		raw, err := r.Marshal()
		if err != nil {
			t.Fatalf("parsed revocation does not encode: %v", err)
		}
		r2, err := ParseRevocation(raw)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		raw2, _ := r2.Marshal()
		if !bytes.Equal(raw, raw2) {
			t.Fatal("encoding not stable")
		}
		_ = r.Verify(cas)
	})
}

// FuzzSplitSignedPolicy: never panics; an accepted split returns a prefix
// of the input as content, a trailer that formats and re-parses to itself,
// and verification against the fuzz CA fails cleanly unless the signature
// is the CA's own.
func FuzzSplitSignedPolicy(f *testing.F) {
	signed, err := SignPolicyFile(fuzzCA, []byte("mode: enforce\nrules: []\n"), 3)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte("mode: audit\n"))
	f.Add([]byte(""))
	f.Add([]byte(PolicySignaturePrefix + " v1\n"))
	f.Add([]byte(PolicySignaturePrefix + " v1 version=0 issuer=x sig=y\n"))
	f.Add([]byte("a: 1\n" + PolicySignaturePrefix + " v2 version=1\nb: 2\n"))
	f.Add([]byte("\n \t\r\n"))
	cas := []ed25519.PublicKey{fuzzCA.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, data []byte) {
		content, sig, err := SplitSignedPolicy(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.HasPrefix(data, content) {
			t.Fatal("content is not a prefix of the file")
		}
		if sig == nil {
			if !bytes.Equal(content, data) {
				t.Fatal("unsigned file: content differs from the file")
			}
			if _, _, err := VerifySignedPolicy(cas, data); !errors.Is(err, ErrUnsigned) {
				t.Fatalf("unsigned file: %v", err)
			}
			return
		}
		if sig.Version == 0 || sig.Sig == "" {
			t.Fatalf("trailer accepted without version or signature: %+v", sig)
		}
		again, err := parsePolicyTrailer(sig.String())
		if err != nil || *again != *sig {
			t.Fatalf("trailer does not re-parse: %+v %v", again, err)
		}
		_, _, _ = VerifySignedPolicy(cas, data)
	})
}

// FuzzParseCAPublicKeys: never panics; accepted files yield distinct
// 32-byte keys, and the keys marshalled back parse to the same list.
func FuzzParseCAPublicKeys(f *testing.F) {
	pub := fuzzCA.Public().(ed25519.PublicKey)
	f.Add(MarshalPublicKey(pub, t0))
	f.Add(append(MarshalPublicKey(pub, t0), MarshalPublicKey(pub, t0)...))
	f.Add([]byte("# only a comment\n\n"))
	f.Add([]byte("AAAA\n"))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseCAPublicKeys("ca.pub", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCA) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrNoCA: %v", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys without an error")
		}
		var out []byte
		for i, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("key %d has %d bytes", i, len(k))
			}
			for _, o := range keys[:i] {
				if bytes.Equal(o, k) {
					t.Fatal("duplicate key returned")
				}
			}
			out = append(out, MarshalPublicKey(k, t0)...)
		}
		back, err := ParseCAPublicKeys("again", out)
		if err != nil || len(back) != len(keys) {
			t.Fatalf("marshalled keys do not parse back: %d %v", len(back), err)
		}
	})
}

// FuzzParsePrivateKey: never panics; an accepted key is a usable Ed25519
// private key whose marshalled form parses to the same key.
func FuzzParsePrivateKey(f *testing.F) {
	b, err := MarshalPrivateKey(fuzzCA)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQA=\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKey(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(k) != ed25519.PrivateKeySize {
			t.Fatalf("key of %d bytes", len(k))
		}
		msg := []byte("m")
		if !ed25519.Verify(k.Public().(ed25519.PublicKey), msg, ed25519.Sign(k, msg)) {
			t.Fatal("accepted key cannot sign")
		}
		again, err := MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParsePrivateKey(again)
		if err != nil || !k2.Equal(k) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
