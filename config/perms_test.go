package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Secret files (the node key and the cluster keyring) that their group or
// others can access are refused, whichever bit gives the access; a file
// only its owner can read is taken. Root ignores file modes when reading,
// so the check is on the mode itself and holds for root too.
func TestSecretFilePermissions(t *testing.T) {
	for _, tc := range []struct {
		file, key string
	}{{"private.key", "private_key_file"}, {"cluster.key", "gossip.secret_file"}} {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601} {
			path := writeDir(t, "")
			secret := filepath.Join(filepath.Dir(path), tc.file)
			if err := os.Chmod(secret, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), secret) {
				t.Errorf("%s mode %04o: want an error naming %s and the file, got %v", tc.file, mode, tc.key, err)
			}
			if tc.file == "cluster.key" {
				if _, err := ReadClusterKeys(secret); err == nil {
					t.Errorf("ReadClusterKeys accepted mode %04o", mode)
				}
			}
		}
		for _, mode := range []os.FileMode{0o600, 0o400} {
			path := writeDir(t, "")
			if err := os.Chmod(filepath.Join(filepath.Dir(path), tc.file), mode); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err != nil {
				t.Errorf("%s mode %04o refused: %v", tc.file, mode, err)
			}
		}
	}
}

// A directory or a missing file where a secret should be is an error naming
// the key, not a crash or an empty keyring.
func TestSecretFileNotAFile(t *testing.T) {
	for _, tc := range []struct{ file, key string }{{"private.key", "private_key_file"}, {"cluster.key", "gossip.secret_file"}} {
		path := writeDir(t, "")
		secret := filepath.Join(filepath.Dir(path), tc.file)
		if err := os.Remove(secret); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s missing: %v", tc.file, err)
		}
		if err := os.Mkdir(secret, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s is a directory: %v", tc.file, err)
		}
	}
}
