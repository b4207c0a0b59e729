package quarantine

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/segmesh/segmesh/ca"
)

// Actions of an Entry.
const (
	ActionQuarantine = "quarantine"
	ActionRelease    = "release"
)

// Limits of an entry.
const (
	MaxReasonLen = 200
	MaxAllowFrom = 32
	MaxNameLen   = 63
)

// ErrMalformed marks an entry that breaks the format.
var ErrMalformed = errors.New("malformed quarantine entry")

// ErrSignature marks an entry whose signature is missing or does not verify
// against the trusted keys.
var ErrSignature = errors.New("quarantine entry not signed by a trusted key")

var segmentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Entry quarantines or releases one node, named by its WireGuard public
// key. Time (unix nanoseconds) is its version: of two entries for one
// node the later wins (see Newer).
type Entry struct {
	Target    string   `json:"target"` // WireGuard public key, base64
	Name      string   `json:"name"`   // the node's name when issued (for people)
	Action    string   `json:"action"` // quarantine | release
	AllowFrom []string `json:"allow_from"`
	Reason    string   `json:"reason"`
	Time      int64    `json:"time"` // unix nanoseconds
	By        string   `json:"by"`   // who issued it, e.g. root@ops-1
	// CA mode: the signing key's ID (ca.KeyIDOf) and its Ed25519
	// signature over "segmesh quarantine v1\n" + the entry without it.
	Signer    string `json:"signer,omitempty"`
	Signature []byte `json:"signature,omitempty"`
}

const signingDomain = "segmesh quarantine v1\n"

// Since is when the entry was issued.
func (e *Entry) Since() time.Time { return time.Unix(0, e.Time).UTC() }

// Quarantined reports whether e puts its node in quarantine.
func (e *Entry) Quarantined() bool { return e.Action == ActionQuarantine }

// Validate checks the format (not the signature).
func (e *Entry) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if _, err := wgtypes.ParseKey(e.Target); err != nil {
		return bad("target %q is no WireGuard public key", e.Target)
	}
	switch {
	case e.Action != ActionQuarantine && e.Action != ActionRelease:
		return bad("action %q: want quarantine or release", e.Action)
	case e.Time <= 0:
		return bad("no time")
	case !printable(e.Name, MaxNameLen), !printable(e.By, MaxNameLen*2):
		return bad("name or issuer: at most %d bytes of UTF-8 without control characters", MaxNameLen)
	case !printable(e.Reason, MaxReasonLen):
		return bad("reason: at most %d bytes of UTF-8 without control characters", MaxReasonLen)
	case len(e.AllowFrom) > MaxAllowFrom:
		return bad("at most %d --allow-from segments", MaxAllowFrom)
	case e.Action == ActionRelease && len(e.AllowFrom) > 0:
		return bad("a release has no allow_from")
	}
	for _, s := range e.AllowFrom {
		if !segmentRE.MatchString(s) {
			return bad("allow_from %q is no segment name", s)
		}
	}
	return nil
}

func printable(s string, max int) bool { return ca.ValidText(s, max) }

// signingInput is what the signature covers: the entry without its
// signature, in its JSON encoding (fields in declaration order).
func (e *Entry) signingInput() ([]byte, error) {
	c := *e
	c.Signature = nil
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode quarantine entry: %w", err)
	}
	return append([]byte(signingDomain), b...), nil
}

// Sign signs e with priv (a CA or operator key), setting Signer.
func Sign(priv ed25519.PrivateKey, e Entry) (Entry, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return Entry{}, fmt.Errorf("sign quarantine entry: key has %d bytes", len(priv))
	}
	if err := e.Validate(); err != nil {
		return Entry{}, err
	}
	e.Signer = ca.KeyIDOf(priv.Public().(ed25519.PublicKey)).String()
	in, err := e.signingInput()
	if err != nil {
		return Entry{}, err
	}
	e.Signature = ed25519.Sign(priv, in)
	return e, nil
}

// Verify checks e's signature against keys (CA and operator keys).
func Verify(e *Entry, keys []ed25519.PublicKey) error {
	if len(e.Signature) == 0 || e.Signer == "" {
		return fmt.Errorf("%w: unsigned (CA mode: sign with --sign-key, a CA or operator key)", ErrSignature)
	}
	in, err := e.signingInput()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if ca.KeyIDOf(k).String() == e.Signer {
			if ed25519.Verify(k, in, e.Signature) {
				return nil
			}
			return fmt.Errorf("%w: bad signature by %s", ErrSignature, e.Signer)
		}
	}
	return fmt.Errorf("%w: signer %s is neither a CA key nor in trust.operator_keys_file", ErrSignature, e.Signer)
}

// Newer reports whether a supersedes b (entries for one node): the later
// time wins; at the same time a release wins, then the larger signature,
// so every node picks the same one.
func Newer(a, b *Entry) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if a.Action != b.Action {
		return a.Action == ActionRelease
	}
	if c := bytes.Compare(a.Signature, b.Signature); c != 0 {
		return c > 0
	}
	return a.Reason+a.By > b.Reason+b.By
}
