package ca

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// RevocationListFormat is the list encoding this build writes. Decoders
// accept any format >= 1, ignore unknown JSON fields and skip entries of a
// newer entry format, so a rolling upgrade can extend both.
const RevocationListFormat = 1

// revKey identifies an entry: one issuer revokes one target once.
type revKey struct {
	issuer KeyID
	kind   byte
	target [32]byte
}

func keyOf(r *Revocation) revKey {
	k := revKey{issuer: r.Issuer}
	if r.BySerial() {
		k.kind = kindSerial
		copy(k.target[:], r.Serial[:])
	} else {
		k.kind = kindKey
		copy(k.target[:], r.PublicKey[:])
	}
	return k
}

func compareKeys(a, b revKey) int {
	if c := bytes.Compare(a.issuer[:], b.issuer[:]); c != 0 {
		return c
	}
	if a.kind != b.kind {
		return int(a.kind) - int(b.kind)
	}
	return bytes.Compare(a.target[:], b.target[:])
}

type listEntry struct {
	rev *SignedRevocation
	raw []byte // compact form
}

// RevocationList is a grow-only set of signed revocation entries, keyed by
// (issuer, serial or public key). Every entry is verified against the
// list's CA keys before it is added; entries of unknown issuers and forged
// entries are rejected. Nothing is ever removed, so Version — the number of
// entries — only grows, and merging the same entries in any order yields
// the same list (same Encode output): when one issuer revoked the same
// target twice, the entry whose compact form sorts first (the earliest) is
// kept.
//
// A list belongs to one set of CA keys. After a CA rotation that drops a
// key, rebuild the list with NewRevocationList(newCAs).AddAll(old.Entries()):
// entries of the dropped CA are then rejected (and Version may drop), so keep
// an old CA key in trust.ca_file until its revocations no longer matter.
//
// A RevocationList is safe for concurrent use.
type RevocationList struct {
	cas []ed25519.PublicKey

	mu      sync.RWMutex
	entries map[revKey]listEntry
	serials map[Serial]struct{}
	keys    map[wgtypes.Key]struct{}
}

// NewRevocationList returns an empty list that accepts entries signed by
// one of cas.
func NewRevocationList(cas []ed25519.PublicKey) *RevocationList {
	return &RevocationList{
		cas:     slices.Clone(cas),
		entries: map[revKey]listEntry{},
		serials: map[Serial]struct{}{},
		keys:    map[wgtypes.Key]struct{}{},
	}
}

// Add verifies e against the list's CA keys and adds it. added is true when
// e revokes something this issuer had not revoked yet (Version grew); a
// duplicate is a no-op with added false and no error. The error wraps
// ErrMalformed, ErrUnknownIssuer or ErrBadSignature.
func (l *RevocationList) Add(e *SignedRevocation) (added bool, err error) {
	if err := e.Verify(l.cas); err != nil {
		return false, err
	}
	raw, err := e.Marshal()
	if err != nil {
		return false, err
	}
	k := keyOf(&e.Revocation)
	l.mu.Lock()
	defer l.mu.Unlock()
	old, exists := l.entries[k]
	if exists {
		if bytes.Compare(raw, old.raw) < 0 { // deterministic choice, see the type's doc
			l.entries[k] = listEntry{rev: cloneRevocation(e), raw: raw}
		}
		return false, nil
	}
	l.entries[k] = listEntry{rev: cloneRevocation(e), raw: raw}
	if e.BySerial() {
		l.serials[e.Serial] = struct{}{}
	} else {
		l.keys[e.PublicKey] = struct{}{}
	}
	return true, nil
}

func cloneRevocation(e *SignedRevocation) *SignedRevocation {
	c := *e
	c.Signature = slices.Clone(e.Signature)
	return &c
}

// AddAll adds every entry it can (see Add) and returns how many were new.
// err joins the rejections (errors.Is works on it); valid entries are added
// even when others are rejected.
func (l *RevocationList) AddAll(entries []*SignedRevocation) (added int, err error) {
	var errs []error
	for _, e := range entries {
		ok, err := l.Add(e)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			added++
		}
	}
	return added, errors.Join(errs...)
}

// Merge adds other's entries, verified against l's CA keys; see AddAll.
func (l *RevocationList) Merge(other *RevocationList) (added int, err error) {
	return l.AddAll(other.Entries())
}

// Version is the number of entries; it never decreases.
func (l *RevocationList) Version() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return uint64(len(l.entries))
}

// Entries returns the entries in a stable order (issuer, kind, target).
// They are copies: changing them does not change the list.
func (l *RevocationList) Entries() []*SignedRevocation {
	l.mu.RLock()
	defer l.mu.RUnlock()
	keys := make([]revKey, 0, len(l.entries))
	for k := range l.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	out := make([]*SignedRevocation, len(keys))
	for i, k := range keys {
		out[i] = cloneRevocation(l.entries[k].rev)
	}
	return out
}

// RevokedSerial reports whether a certificate serial is revoked.
func (l *RevocationList) RevokedSerial(s Serial) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.serials[s]
	return ok
}

// RevokedKey reports whether a WireGuard public key is revoked (then every
// certificate for it is).
func (l *RevocationList) RevokedKey(k wgtypes.Key) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.keys[k]
	return ok
}

// Revoked reports whether c is revoked by its serial or by its public key.
func (l *RevocationList) Revoked(c *Certificate) bool {
	return l.RevokedSerial(c.Serial) || l.RevokedKey(c.PublicKey)
}

// Check returns an error wrapping ErrRevoked, naming what was revoked, when
// c is revoked; else nil.
func (l *RevocationList) Check(c *Certificate) error {
	switch {
	case l.RevokedSerial(c.Serial):
		return fmt.Errorf("certificate %s: %w (serial)", c.Serial, ErrRevoked)
	case l.RevokedKey(c.PublicKey):
		return fmt.Errorf("certificate %s: %w (key %s)", c.Serial, ErrRevoked, c.PublicKey)
	}
	return nil
}

// revocationListJSON is the list's wire and disk form.
type revocationListJSON struct {
	Format  int      `json:"format"`
	Version uint64   `json:"version"` // informational: the number of entries
	Entries [][]byte `json:"entries"` // compact forms (base64 in JSON), sorted
}

// Encode returns the list's versioned form for gossip and persistence: JSON
// {"format":1,"version":N,"entries":[base64 compact entries, sorted]}. Equal
// lists encode to equal bytes.
func (l *RevocationList) Encode() ([]byte, error) {
	l.mu.RLock()
	keys := make([]revKey, 0, len(l.entries))
	for k := range l.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	doc := revocationListJSON{Format: RevocationListFormat, Version: uint64(len(keys)), Entries: make([][]byte, len(keys))}
	for i, k := range keys {
		doc.Entries[i] = l.entries[k].raw
	}
	l.mu.RUnlock()
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode revocation list: %w", err)
	}
	return b, nil
}

// DecodeRevocationList parses what Encode returns into its entries, checking
// structure only: add them with RevocationList.AddAll, which verifies each.
// Unknown JSON fields are ignored and entries of a newer entry format are
// skipped; anything else malformed fails the whole document (ErrMalformed).
// Callers bound the input's size (each entry is about 130 bytes).
func DecodeRevocationList(b []byte) ([]*SignedRevocation, error) {
	var doc revocationListJSON
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode revocation list: %w: %v", ErrMalformed, err)
	}
	if doc.Format < 1 {
		return nil, fmt.Errorf("decode revocation list: %w: format %d", ErrMalformed, doc.Format)
	}
	out := make([]*SignedRevocation, 0, len(doc.Entries))
	for i, raw := range doc.Entries {
		if len(raw) > 0 && raw[0] > RevocationFormat {
			continue // a newer entry format: not ours to judge
		}
		e, err := decodeRevocation(raw)
		if err != nil {
			return nil, fmt.Errorf("decode revocation list: entry %d: %w", i, err)
		}
		out = append(out, e)
	}
	return out, nil
}
