package ca

import (
	"github.com/segmesh/segmesh/mesh"

	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"
)

// KeyIDSize is the length of a KeyID in bytes.
const KeyIDSize = 12

// KeyID names a CA public key: the first 12 bytes of the SHA-256 of the raw
// 32-byte Ed25519 public key. Certificates and revocations carry it as their
// Issuer so a verifier picks the right key among several (CA rotation).
// It only selects a key; the signature is what proves the issuer.
type KeyID [KeyIDSize]byte

// KeyIDOf returns the KeyID of a CA public key.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

// Fingerprint is the printable KeyID of a CA public key (16 characters of
// unpadded standard base64); it is what `ca init`, `cert show` and signed
// policy files show as the issuer.
func Fingerprint(pub ed25519.PublicKey) string { return KeyIDOf(pub).String() }

// String returns the KeyID as 16 characters of unpadded standard base64.
func (id KeyID) String() string { return base64.RawStdEncoding.EncodeToString(id[:]) }

// ParseKeyID parses the form String returns.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != KeyIDSize {
		return id, fmt.Errorf("%w: issuer %q: want %d characters of base64", ErrMalformed, s, base64.RawStdEncoding.EncodedLen(KeyIDSize))
	}
	copy(id[:], b)
	return id, nil
}

// MarshalText implements encoding.TextMarshaler (JSON shows the fingerprint).
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *KeyID) UnmarshalText(b []byte) error {
	v, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// findCA returns the key among cas whose KeyID is id.
func findCA(cas []ed25519.PublicKey, id KeyID) (ed25519.PublicKey, error) {
	for _, k := range cas {
		if len(k) == ed25519.PublicKeySize && KeyIDOf(k) == id {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w %s (not in the trusted CA keys)", ErrUnknownIssuer, id)
}

// GenerateCA returns a fresh CA key pair.
func GenerateCA() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	return pub, priv, nil
}

// privatePEMType is the PEM type of the CA private key file (PKCS #8, as
// written by `openssl genpkey -algorithm ed25519`).
const privatePEMType = "PRIVATE KEY"

// MarshalPrivateKey returns the CA private key file's content: a PKCS #8
// "PRIVATE KEY" PEM block.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode CA private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: privatePEMType, Bytes: der}), nil
}

// ParsePrivateKey parses what MarshalPrivateKey returns (any PKCS #8 Ed25519
// key in PEM).
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != privatePEMType {
		return nil, fmt.Errorf("%w: want a PEM %q block", ErrMalformed, privatePEMType)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrMalformed)
	}
	return priv, nil
}

// LoadPrivateKey reads a CA private key file, refusing one that is group- or
// world-accessible (ErrKeyPermissions).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	if err := CheckSecretFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

// CheckSecretFile refuses a file that is not regular or whose mode gives its
// group or others any access (the same check as the node's WireGuard key).
func CheckSecretFile(path string) error { return mesh.CheckSecretFile(path) }

// MarshalPublicKey returns the text form of a CA public key file: comment
// lines naming the fingerprint and creation time, then the raw 32-byte key in
// standard base64 on a line of its own. Several such files may be
// concatenated into one trust.ca_file.
func MarshalPublicKey(pub ed25519.PublicKey, created time.Time) []byte {
	return fmt.Appendf(nil, "# segmesh CA public key %s, created %s\n%s\n",
		Fingerprint(pub), created.UTC().Format(time.RFC3339), base64.StdEncoding.EncodeToString(pub))
}

// ParseCAPublicKeys parses the text form of trust.ca_file: one standard
// base64 Ed25519 public key per line; blank lines and everything from a '#'
// on are ignored. Duplicates are dropped. name is used in error messages
// (file:line). An input without any key is ErrNoCA.
func ParseCAPublicKeys(name string, data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	seen := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		b, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s:%d: %w: want a base64 32-byte Ed25519 public key", name, i+1, ErrMalformed)
		}
		if seen[line] {
			continue
		}
		seen[line] = true
		keys = append(keys, ed25519.PublicKey(b))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNoCA)
	}
	return keys, nil
}

// LoadCAPublicKeys reads a CA public key file (trust.ca_file, or ca.pub);
// see ParseCAPublicKeys. It may list several keys during a CA rotation.
func LoadCAPublicKeys(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA public keys: %w", err)
	}
	return ParseCAPublicKeys(path, b)
}
