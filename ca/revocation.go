package ca

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"os"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Revocation format and encoding constants.
const (
	// RevocationFormat is the revocation entry format this build writes and reads.
	RevocationFormat = 1
	// RevocationPEMType is the PEM block type of a revocation file
	// (`cert revoke --out`).
	RevocationPEMType = "SEGMESH REVOCATION"
	// MaxReasonLen bounds Revocation.Reason in bytes.
	MaxReasonLen = 200

	revocationDomain = "segmesh revocation v1\n"

	kindSerial = 1
	kindKey    = 2
)

// Revocation withdraws trust from one certificate serial or from one
// WireGuard public key (every certificate for it, by any trusted CA) —
// never from a name, which may repeat. Exactly one of Serial and PublicKey
// is set.
type Revocation struct {
	Format    int         // RevocationFormat
	Serial    Serial      // revoke the certificate with this serial, or
	PublicKey wgtypes.Key // revoke every certificate for this key
	Reason    string      // free text, at most MaxReasonLen bytes, no control characters
	Time      time.Time   // when it was signed (whole seconds, UTC)
	Issuer    KeyID       // KeyIDOf the signing CA key
}

// SignedRevocation is a revocation with the CA's Ed25519 signature over
// "segmesh revocation v1\n" followed by its canonical body. Each entry is
// signed on its own, so entries can be produced offline, carried as files
// and merged in any order.
type SignedRevocation struct {
	Revocation
	Signature []byte
}

// BySerial reports whether r revokes a serial (else a public key).
func (r *Revocation) BySerial() bool { return !r.Serial.IsZero() }

// Target describes what r revokes, e.g. "serial 0a1b…" or "key AbC…=".
func (r *Revocation) Target() string {
	if r.BySerial() {
		return "serial " + r.Serial.String()
	}
	return "key " + r.PublicKey.String()
}

// Revoke signs r with the CA key, filling in Format, Issuer and, when zero,
// Time (now). Time is truncated to whole seconds.
func Revoke(caPriv ed25519.PrivateKey, r Revocation) (*SignedRevocation, error) {
	if len(caPriv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign revocation: CA private key has %d bytes", len(caPriv))
	}
	r.Format = RevocationFormat
	r.Issuer = KeyIDOf(caPriv.Public().(ed25519.PublicKey))
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.Truncate(time.Second).UTC()
	body, err := r.body()
	if err != nil {
		return nil, fmt.Errorf("sign revocation: %w", err)
	}
	return &SignedRevocation{Revocation: r, Signature: ed25519.Sign(caPriv, signingInput(revocationDomain, body))}, nil
}

func (r *Revocation) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	bySerial, byKey := !r.Serial.IsZero(), r.PublicKey != wgtypes.Key{}
	switch {
	case r.Format != RevocationFormat:
		return bad("unsupported revocation format %d", r.Format)
	case bySerial == byKey:
		return bad("a revocation names exactly one of a serial and a public key")
	case !validReason(r.Reason):
		return bad("reason: at most %d bytes of UTF-8 without control characters", MaxReasonLen)
	case !validTime(r.Time):
		return bad("time %s: want whole seconds between 1970 and 9999", r.Time)
	}
	return nil
}

func validReason(s string) bool { return ValidText(s, MaxReasonLen) }

// ValidText reports whether s is at most max bytes of UTF-8 without
// control characters (reasons, names in signed entries).
func ValidText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// body is the canonical encoding (format 1):
//
//	u8 format | fixed[12] issuer | u8 kind (1 serial, 2 key) |
//	fixed[16] serial or fixed[32] key | i64 time | str reason
func (r *Revocation) body() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	e := &encoder{b: make([]byte, 0, 80+len(r.Reason))}
	e.u8(byte(r.Format))
	e.fixed(r.Issuer[:])
	if r.BySerial() {
		e.u8(kindSerial)
		e.fixed(r.Serial[:])
	} else {
		e.u8(kindKey)
		e.fixed(r.PublicKey[:])
	}
	e.i64(r.Time.Unix())
	e.str(r.Reason)
	return e.b, nil
}

// Marshal returns the compact binary form: body followed by the signature.
func (s *SignedRevocation) Marshal() ([]byte, error) {
	body, err := s.body()
	if err != nil {
		return nil, fmt.Errorf("encode revocation: %w", err)
	}
	if len(s.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("encode revocation: %w: signature has %d bytes", ErrMalformed, len(s.Signature))
	}
	return append(body, s.Signature...), nil
}

// PEM returns the file form: the compact form in a "SEGMESH REVOCATION"
// PEM block.
func (s *SignedRevocation) PEM() ([]byte, error) {
	raw, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: RevocationPEMType, Bytes: raw}), nil
}

// ParseRevocation decodes a revocation entry from its PEM file form or its
// compact form. It checks structure only (failures wrap ErrMalformed); call
// Verify, or add it to a RevocationList, before trusting it.
func ParseRevocation(data []byte) (*SignedRevocation, error) {
	raw, err := unPEM(data, RevocationPEMType)
	if err != nil {
		return nil, fmt.Errorf("parse revocation: %w", err)
	}
	s, err := decodeRevocation(raw)
	if err != nil {
		return nil, fmt.Errorf("parse revocation: %w", err)
	}
	return s, nil
}

func decodeRevocation(raw []byte) (*SignedRevocation, error) {
	d := &decoder{b: raw}
	var r Revocation
	r.Format = int(d.u8("format"))
	if d.err == nil && r.Format != RevocationFormat {
		d.fail("unsupported revocation format %d", r.Format)
	}
	d.fixed(r.Issuer[:], "issuer")
	switch kind := d.u8("kind"); {
	case kind == kindSerial:
		d.fixed(r.Serial[:], "serial")
	case kind == kindKey:
		d.fixed(r.PublicKey[:], "public key")
	default:
		d.fail("revocation kind %d", kind)
	}
	r.Time = time.Unix(d.i64("time"), 0).UTC()
	r.Reason = d.str(MaxReasonLen, "reason")
	sig := d.take(ed25519.SignatureSize, "signature")
	d.end("signature")
	if d.err != nil {
		return nil, d.err
	}
	s := &SignedRevocation{Revocation: r, Signature: bytes.Clone(sig)}
	if err := checkCanonical(s.Marshal, raw); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadRevocation reads and parses a revocation file (`cert revoke --out`).
func LoadRevocation(path string) (*SignedRevocation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read revocation: %w", err)
	}
	s, err := ParseRevocation(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Verify checks that the entry is well-formed (ErrMalformed), that its
// issuer is one of cas (ErrUnknownIssuer) and that the signature verifies
// (ErrBadSignature).
func (s *SignedRevocation) Verify(cas []ed25519.PublicKey) error {
	body, err := s.body()
	if err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	key, err := findCA(cas, s.Issuer)
	if err != nil {
		return fmt.Errorf("revocation of %s: %w", s.Target(), err)
	}
	if len(s.Signature) != ed25519.SignatureSize || !ed25519.Verify(key, signingInput(revocationDomain, body), s.Signature) {
		return fmt.Errorf("revocation of %s: %w", s.Target(), ErrBadSignature)
	}
	return nil
}
