package ca

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// VerifyNode is the whole check a CA-mode daemon makes on a certificate
// presented for key — its own at start (refuse to start on error) and every
// peer's record: Signed.VerifyFor (ErrMalformed, ErrUnknownIssuer,
// ErrBadSignature, ErrNotYetValid, ErrExpired, ErrKeyMismatch), then, when
// revoked is not nil, RevocationList.Check (ErrRevoked).
func VerifyNode(cas []ed25519.PublicKey, revoked *RevocationList, s *Signed, key wgtypes.Key, now time.Time) error {
	if s == nil {
		return fmt.Errorf("%w: no certificate", ErrMalformed)
	}
	if err := s.VerifyFor(cas, key, now); err != nil {
		return err
	}
	if revoked != nil {
		return revoked.Check(&s.Certificate)
	}
	return nil
}

// LoadRevocationList reads a list persisted with Save and verifies its
// entries against cas. A missing file yields an empty list. Entries that no
// longer verify (their CA was dropped from cas) are left out and counted in
// dropped; a file that does not decode is an error.
func LoadRevocationList(path string, cas []ed25519.PublicKey) (l *RevocationList, dropped int, err error) {
	l = NewRevocationList(cas)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read revocation list: %w", err)
	}
	entries, err := DecodeRevocationList(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	added, _ := l.AddAll(entries)
	return l, len(entries) - added, nil
}

// Save writes the list (Encode) to path atomically, mode 0600.
func (l *RevocationList) Save(path string) error {
	b, err := l.Encode()
	if err != nil {
		return err
	}
	return WriteFile(path, b, 0o600, true)
}
