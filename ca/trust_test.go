package ca

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerifyNode(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	tmpl := template(t)
	s := issue(t, priv, tmpl)
	l := NewRevocationList(cas)
	if err := VerifyNode(cas, l, s, tmpl.PublicKey, t0); err != nil {
		t.Fatal(err)
	}
	if err := VerifyNode(cas, nil, s, tmpl.PublicKey, t0); err != nil {
		t.Fatal(err)
	}
	if err := VerifyNode(cas, l, nil, tmpl.PublicKey, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil certificate: %v", err)
	}
	if err := VerifyNode(cas, l, s, nodeKey(t), t0); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := l.Add(revokeSerial(t, priv, s.Serial, "")); err != nil {
		t.Fatal(err)
	}
	if err := VerifyNode(cas, l, s, tmpl.PublicKey, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
}

func TestRevocationListSaveLoad(t *testing.T) {
	pubA, privA := newCA(t)
	pubB, privB := newCA(t)
	path := filepath.Join(t.TempDir(), "revocations.json")
	l, dropped, err := LoadRevocationList(path, []ed25519.PublicKey{pubA, pubB})
	if err != nil || dropped != 0 || l.Version() != 0 {
		t.Fatalf("missing file: %v %d %d", err, dropped, l.Version())
	}
	sA, _ := NewSerial()
	sB, _ := NewSerial()
	if _, err := l.AddAll([]*SignedRevocation{revokeSerial(t, privA, sA, ""), revokeSerial(t, privB, sB, "")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o", st.Mode().Perm())
	}
	back, dropped, err := LoadRevocationList(path, []ed25519.PublicKey{pubA, pubB})
	if err != nil || dropped != 0 || back.Version() != 2 || !back.RevokedSerial(sA) || !back.RevokedSerial(sB) {
		t.Fatalf("reload: %v %d %d", err, dropped, back.Version())
	}
	// After a rotation that drops B, B's entries no longer count.
	onlyA, dropped, err := LoadRevocationList(path, []ed25519.PublicKey{pubA})
	if err != nil || dropped != 1 || onlyA.Version() != 1 || onlyA.RevokedSerial(sB) {
		t.Fatalf("rotation: %v %d %d", err, dropped, onlyA.Version())
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadRevocationList(path, []ed25519.PublicKey{pubA}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage file: %v", err)
	}
}
