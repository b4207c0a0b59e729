package ca

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The CA private key is refused when its group or others have any access
// (root reads any file, so the mode itself is what is checked), and when
// it is not a regular file.
func TestLoadPrivateKeyPermissions(t *testing.T) {
	_, priv := newCA(t)
	b, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPrivateKey(path); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %04o: want ErrKeyPermissions, got %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		k, err := LoadPrivateKey(path)
		if err != nil || !k.Equal(priv) {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
	if _, err := LoadPrivateKey(dir); err == nil {
		t.Error("a directory was loaded as a CA key")
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing CA key loaded")
	}
	// A symlink is judged by its target's mode.
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(link); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("symlink to a 0644 key: %v", err)
	}
}
