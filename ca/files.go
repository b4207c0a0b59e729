package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Names of the files `ca init` writes.
const (
	PrivateKeyFile = "ca.key"
	PublicKeyFile  = "ca.pub"
)

// InitResult describes what InitDir wrote.
type InitResult struct {
	PrivateKeyFile string // DIR/ca.key, mode 0600
	PublicKeyFile  string // DIR/ca.pub, mode 0644
	Fingerprint    string // the new CA key's fingerprint
}

// InitDir creates dir (0700) if needed and writes a new CA key pair into it:
// ca.key (PKCS #8 PEM, 0600) and ca.pub (text form, 0644). It never
// overwrites: if either file exists it fails without writing anything.
func InitDir(dir string, now time.Time) (InitResult, error) {
	return InitKeyPair(dir, PrivateKeyFile, PublicKeyFile, now)
}

// Names of the files `ca operator-key` writes.
const (
	OperatorKeyFile    = "operator.key"
	OperatorPubKeyFile = "operator.pub"
)

// InitKeyPair is InitDir with other file names: an Ed25519 key pair in the
// CA key formats, e.g. an operator key (operator.key, operator.pub).
func InitKeyPair(dir, privName, pubName string, now time.Time) (InitResult, error) {
	r := InitResult{
		PrivateKeyFile: filepath.Join(dir, privName),
		PublicKeyFile:  filepath.Join(dir, pubName),
	}
	for _, p := range []string{r.PrivateKeyFile, r.PublicKeyFile} {
		if _, err := os.Lstat(p); err == nil {
			return r, fmt.Errorf("refusing to overwrite %s: %w", p, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return r, fmt.Errorf("check %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, fmt.Errorf("create %s: %w", dir, err)
	}
	pub, priv, err := GenerateCA()
	if err != nil {
		return r, err
	}
	pemKey, err := MarshalPrivateKey(priv)
	if err != nil {
		return r, err
	}
	if err := WriteFile(r.PrivateKeyFile, pemKey, 0o600, false); err != nil {
		return r, err
	}
	if err := WriteFile(r.PublicKeyFile, MarshalPublicKey(pub, now), 0o644, false); err != nil {
		_ = os.Remove(r.PrivateKeyFile) // leave no key without its public half
		return r, err
	}
	r.Fingerprint = Fingerprint(pub)
	return r, nil
}

// WriteFile writes data to path with exactly mode perm (the umask does not
// apply). Unless overwrite is set it fails (fs.ErrExist) when path exists.
// Data is written to a temporary file in the same directory and renamed, so
// a reader never sees a partial file.
func WriteFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if !overwrite {
		// Link fails if path appeared meanwhile; rename would replace it.
		if err := os.Link(tmp.Name(), path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", path, fs.ErrExist)
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
