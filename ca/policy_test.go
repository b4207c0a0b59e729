package ca

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

const policyYAML = `mode: enforce
segments:
  web: {role: web}
  db: {role: db}
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: [tcp/5432]
`

func TestPolicySignatureCoversContentAndVersion(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	content := []byte(policyYAML)
	sig, err := SignPolicy(priv, content, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPolicy(cas, content, 7, sig); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPolicy(cas, content, 8, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other version: %v", err)
	}
	if err := VerifyPolicy(cas, append(bytes.Clone(content), ' '), 7, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other content: %v", err)
	}
	other, _ := newCA(t)
	if err := VerifyPolicy([]ed25519.PublicKey{other}, content, 7, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other CA: %v", err)
	}
	if err := VerifyPolicy([]ed25519.PublicKey{other, pub}, content, 7, sig); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	if err := VerifyPolicy(cas, content, 7, "not-base64!"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage signature: %v", err)
	}
	if _, err := SignPolicy(priv, content, 0); err == nil {
		t.Fatal("version 0 signed")
	}
	// A certificate signature over the same bytes is no policy signature
	// (domain separation) — sign the policy input's shape with the cert domain.
	certSig := ed25519.Sign(priv, signingInput(certDomain, policyInput(content, 7)[len(policyDomain):]))
	if ed25519.Verify(pub, policyInput(content, 7), certSig) {
		t.Fatal("domain separation missing")
	}
}

func TestSignPolicyFileRoundTrip(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	for name, in := range map[string]string{
		"plain":           policyYAML,
		"no final EOL":    strings.TrimSuffix(policyYAML, "\n"),
		"CRLF":            strings.ReplaceAll(policyYAML, "\n", "\r\n"),
		"with a comment":  "# owned by netops\n" + policyYAML,
		"empty (no file)": "",
	} {
		t.Run(name, func(t *testing.T) {
			signed, err := SignPolicyFile(priv, []byte(in), 3)
			if err != nil {
				t.Fatal(err)
			}
			content, sig, err := SplitSignedPolicy(signed)
			if err != nil {
				t.Fatal(err)
			}
			if sig == nil || sig.Version != 3 || sig.Issuer != KeyIDOf(pub) {
				t.Fatalf("trailer: %+v", sig)
			}
			if !bytes.HasPrefix([]byte(in), bytes.TrimSuffix(content, []byte("\n"))) {
				t.Fatalf("content changed:\n%q\n%q", in, content)
			}
			if err := sig.Verify(cas, content); err != nil {
				t.Fatal(err)
			}
			c2, v, err := VerifySignedPolicy(cas, signed)
			if err != nil || v != 3 || !bytes.Equal(c2, content) {
				t.Fatalf("VerifySignedPolicy: %v %d", err, v)
			}
			// Trailing blank lines after the trailer are tolerated.
			if _, _, err := VerifySignedPolicy(cas, append(bytes.Clone(signed), "\n\n  \n"...)); err != nil {
				t.Fatalf("trailing blank lines: %v", err)
			}
			// Re-signing replaces the trailer.
			again, err := SignPolicyFile(priv, signed, 4)
			if err != nil {
				t.Fatal(err)
			}
			c3, v, err := VerifySignedPolicy(cas, again)
			if err != nil || v != 4 || !bytes.Equal(c3, content) || bytes.Count(again, []byte(PolicySignaturePrefix)) != 1 {
				t.Fatalf("re-sign: %v v%d\n%s", err, v, again)
			}
		})
	}
}

func TestSignedPolicyVersionCannotBeChanged(t *testing.T) {
	pub, priv := newCA(t)
	signed, err := SignPolicyFile(priv, []byte(policyYAML), 5)
	if err != nil {
		t.Fatal(err)
	}
	bumped := bytes.Replace(signed, []byte("version=5"), []byte("version=6"), 1)
	if _, _, err := VerifySignedPolicy([]ed25519.PublicKey{pub}, bumped); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("version bumped: %v", err)
	}
	edited := bytes.Replace(signed, []byte("tcp/5432"), []byte("tcp/5433"), 1)
	if _, _, err := VerifySignedPolicy([]ed25519.PublicKey{pub}, edited); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("content edited: %v", err)
	}
	other, _ := newCA(t)
	if _, _, err := VerifySignedPolicy([]ed25519.PublicKey{other}, signed); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("unknown issuer: %v", err)
	}
	if _, _, err := VerifySignedPolicy([]ed25519.PublicKey{pub}, []byte(policyYAML)); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
}

func TestSplitSignedPolicyGarbage(t *testing.T) {
	_, priv := newCA(t)
	signed, err := SignPolicyFile(priv, []byte(policyYAML), 2)
	if err != nil {
		t.Fatal(err)
	}
	trailer := string(signed[len(policyYAML):])

	unsigned := []byte(policyYAML)
	content, sig, err := SplitSignedPolicy(unsigned)
	if err != nil || sig != nil || !bytes.Equal(content, unsigned) {
		t.Fatalf("unsigned: %v %v", sig, err)
	}
	bad := map[string]string{
		"appended after signing":  string(signed) + "  - name: sneaky\n",
		"unknown trailer version": policyYAML + "# segmesh-signature: v9 version=1\n",
		"no fields":               policyYAML + "# segmesh-signature:\n",
		"missing sig":             policyYAML + strings.Split(trailer, " sig=")[0] + "\n",
		"version zero":            policyYAML + strings.Replace(trailer, "version=2", "version=0", 1),
		"version not a number":    policyYAML + strings.Replace(trailer, "version=2", "version=two", 1),
		"bad issuer":              policyYAML + strings.Replace(trailer, "issuer=", "issuer=zz", 1),
		"bad sig":                 policyYAML + strings.Replace(trailer, "sig=", "sig=!!", 1),
		"not key=value":           policyYAML + "# segmesh-signature: v1 version\n",
		"two trailers":            string(signed) + trailer,
	}
	for name, in := range bad {
		if _, _, err := SplitSignedPolicy([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	// Unknown trailer fields are ignored (forward compatible).
	ext := policyYAML + strings.Replace(trailer, " sig=", " by=ops sig=", 1)
	if _, s, err := SplitSignedPolicy([]byte(ext)); err != nil || s == nil || s.Version != 2 {
		t.Fatalf("extra field: %v %v", s, err)
	}
	// Garbage never panics.
	for _, in := range []string{"", "\n", "# segmesh-signature", "\n\n# segmesh-signature: v1", "\xff\xfe"} {
		_, _, _ = SplitSignedPolicy([]byte(in))
	}
}
