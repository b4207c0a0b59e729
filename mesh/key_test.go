package mesh

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t)
	path := filepath.Join(dir, "private.key")
	if err := WriteSecretFile(path, []byte(k.String()+"\n"), false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("written with mode %o", st.Mode().Perm())
	}
	got, err := LoadPrivateKey(path)
	if err != nil || got != k {
		t.Fatalf("LoadPrivateKey: %v (same key %v)", err, got == k)
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o644, 0o700} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPrivateKey(path)
		if mode&0o077 != 0 && !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %04o: got %v, want ErrKeyPermissions", mode, err)
		}
		if mode&0o077 == 0 && err != nil {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(path); err == nil {
		t.Error("garbage accepted as a key")
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := LoadPrivateKey(dir); err == nil {
		t.Error("directory accepted")
	}
}

func TestWriteSecretFileRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.key")
	if err := WriteSecretFile(path, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	err := WriteSecretFile(path, []byte("two"), false)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite without force: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content changed to %q", b)
	}
	// With overwrite, a loose mode is tightened too.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretFile(path, []byte("two"), true); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "two" || st.Mode().Perm() != 0o600 {
		t.Fatalf("after overwrite: %q mode %o", b, st.Mode().Perm())
	}
}

func TestParseKey(t *testing.T) {
	k := testKey(t)
	got, err := ParseKey("  " + k.String() + "\n")
	if err != nil || got != k {
		t.Fatalf("ParseKey: %v", err)
	}
	if _, err := ParseKey("AAAA"); err == nil {
		t.Fatal("short key accepted")
	}
}
