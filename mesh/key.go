package mesh

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Key is a Curve25519 WireGuard key.
type Key = wgtypes.Key

// ErrKeyPermissions is returned when a private key file is readable by its
// group or by others.
var ErrKeyPermissions = errors.New("key file is group- or world-accessible (want mode 0600)")

// GenerateKey returns a fresh WireGuard private key.
func GenerateKey() (Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return Key{}, fmt.Errorf("generate wireguard key: %w", err)
	}
	return k, nil
}

// ParseKey parses a base64 WireGuard key.
func ParseKey(s string) (Key, error) {
	k, err := wgtypes.ParseKey(strings.TrimSpace(s))
	if err != nil {
		return Key{}, fmt.Errorf("parse wireguard key: %w", err)
	}
	return k, nil
}

// CheckSecretFile refuses a secret file whose mode lets its group or others
// read, write or execute it.
func CheckSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o: %w", path, st.Mode().Perm(), ErrKeyPermissions)
	}
	return nil
}

// LoadPrivateKey reads a base64 private key from path, refusing a file that
// is group- or world-accessible.
func LoadPrivateKey(path string) (Key, error) {
	if err := CheckSecretFile(path); err != nil {
		return Key{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("read private key: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteSecretFile writes data to path with mode 0600. Unless overwrite is
// set it fails when the file exists.
func WriteSecretFile(path string, data []byte, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !overwrite {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists (use --force to overwrite): %w", path, err)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
