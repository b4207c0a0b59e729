package ca

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitDirWritesKeyPairAndRefusesOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	r, err := InitDir(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{r.PrivateKeyFile: 0o600, r.PublicKeyFile: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
	priv, err := LoadPrivateKey(r.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := LoadCAPublicKeys(r.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cas) != 1 || !cas[0].Equal(priv.Public()) || Fingerprint(cas[0]) != r.Fingerprint {
		t.Fatalf("public key file does not match the private key")
	}
	pubText, _ := os.ReadFile(r.PublicKeyFile)
	privText, _ := os.ReadFile(r.PrivateKeyFile)

	_, err = InitDir(dir, t0)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second init: %v", err)
	}
	// Only the public half exists: still refused, nothing written.
	if err := os.Remove(r.PrivateKeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := InitDir(dir, t0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("init over ca.pub: %v", err)
	}
	if _, err := os.Stat(r.PrivateKeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused init wrote a key: %v", err)
	}
	if b, _ := os.ReadFile(r.PublicKeyFile); !bytes.Equal(b, pubText) {
		t.Fatal("refused init changed ca.pub")
	}
	if !bytes.Contains(privText, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("private key is not PKCS#8 PEM:\n%s", privText)
	}
}

func TestLoadPrivateKeyRefusesReadableFile(t *testing.T) {
	_, priv := newCA(t)
	b, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.key")
	if err := WriteFile(path, b, 0o640, false); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(path); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("0640 key: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(priv) {
		t.Fatal("loaded another key")
	}
	if _, err := ParsePrivateKey([]byte("nope")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage key: %v", err)
	}
}

func TestParseCAPublicKeys(t *testing.T) {
	a, _ := newCA(t)
	b, _ := newCA(t)
	text := string(MarshalPublicKey(a, t0)) + "\n  # the next CA\n" +
		base64.StdEncoding.EncodeToString(b) + "   # trailing comment\n" +
		base64.StdEncoding.EncodeToString(a) + "\n"
	keys, err := ParseCAPublicKeys("ca_file", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[0].Equal(a) || !keys[1].Equal(b) {
		t.Fatalf("got %d keys, want a then b (duplicate dropped)", len(keys))
	}
	for name, in := range map[string]string{
		"empty":        "",
		"only comment": "# nothing\n\n",
	} {
		if _, err := ParseCAPublicKeys("f", []byte(in)); !errors.Is(err, ErrNoCA) {
			t.Errorf("%s: %v", name, err)
		}
	}
	short := base64.StdEncoding.EncodeToString(a[:31])
	_, err = ParseCAPublicKeys("f", []byte("# c\n"+short+"\n"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "f:2:") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := LoadCAPublicKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestKeyIDText(t *testing.T) {
	pub, _ := newCA(t)
	id := KeyIDOf(pub)
	s := id.String()
	if len(s) != 16 || Fingerprint(pub) != s {
		t.Fatalf("fingerprint %q", s)
	}
	back, err := ParseKeyID(s)
	if err != nil || back != id {
		t.Fatalf("ParseKeyID(%q) = %v, %v", s, back, err)
	}
	if _, err := ParseKeyID(s[:15]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short id: %v", err)
	}
}

func TestWriteFileModes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("a"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("b"), 0o600, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite without permission: %v", err)
	}
	if err := WriteFile(p, []byte("c"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "c" || st.Mode().Perm() != 0o644 {
		t.Fatalf("content %q mode %04o", b, st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestParseSerialAndValidity(t *testing.T) {
	s, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSerial(strings.ToUpper(s.String()))
	if err != nil || back != s {
		t.Fatalf("ParseSerial: %v %v", back, err)
	}
	if _, err := ParseSerial("abc"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short serial: %v", err)
	}
	for in, want := range map[string]string{"365d": "8760h0m0s", "90m": "1h30m0s", "1d": "24h0m0s"} {
		d, err := ParseValidity(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseValidity(%q) = %v, %v", in, d, err)
		}
	}
	for _, in := range []string{"", "0d", "-1h", "xd", "1y", "0s"} {
		if _, err := ParseValidity(in); err == nil {
			t.Errorf("ParseValidity(%q) accepted", in)
		}
	}
}
