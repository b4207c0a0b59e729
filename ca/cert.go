package ca

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Certificate format and encoding constants.
const (
	// CertFormat is the format of a certificate without workload tags; Issue
	// writes it whenever WorkloadTags is empty, so such certificates are
	// byte for byte what builds before workload tags wrote and read.
	CertFormat = 1
	// CertFormatWorkloadTags is format 1 followed by the allowed workload
	// tag pairs; Issue writes it only when there are some. Builds before it
	// reject it (unsupported certificate format 2).
	CertFormatWorkloadTags = 2
	// CertPEMType is the PEM block type of a certificate file.
	CertPEMType = "SEGMESH CERTIFICATE"
	// DefaultValidity is the validity Issue gives a template without NotAfter.
	DefaultValidity = 365 * 24 * time.Hour
	// ClockSkew is how far Issue backdates a template without NotBefore, so
	// a node whose clock is slightly behind the CA's accepts a new cert.
	ClockSkew = 5 * time.Minute

	certDomain = "segmesh cert v1\n"

	// Limits enforced on issue and on decode.
	MaxNameLen      = 63 // bytes; the config's name rule
	MaxTags         = 32
	MaxWorkloadTags = 64 // allowed workload tag pairs
)

// tagRE is the config's rule for tag keys and values.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,63}$`)

// maxUnix bounds certificate and revocation times (9999-12-31T23:59:59Z).
const maxUnix = 253402300799

// Certificate is what the CA attests about one node. The zero Address4
// means the certificate does not fix the node's IPv4. Times are whole
// seconds, UTC.
type Certificate struct {
	Format    int               // CertFormat, or CertFormatWorkloadTags when WorkloadTags is set
	Serial    Serial            // random, unique per certificate
	Name      string            // human node name (1-63 bytes, no spaces)
	PublicKey wgtypes.Key       // the node's WireGuard public key
	Tags      map[string]string // keys lower-case; keys and values [A-Za-z0-9_./-]{1,63}
	Address4  netip.Addr        // optional fixed overlay IPv4 (authoritative when set)
	NotBefore time.Time         // valid from (inclusive)
	NotAfter  time.Time         // valid until (exclusive)
	Issuer    KeyID             // KeyIDOf the signing CA key
	// WorkloadTags are the tag pairs the node's workloads may carry
	// (DESIGN.md "Workloads", CA mode), sorted by key then value, no
	// duplicates, keys lower-case and none of Tags' keys. One key may have
	// several values. Empty: the node's workloads may carry no tags.
	WorkloadTags []TagPair
}

// Signed is a certificate with the CA's Ed25519 signature over
// "segmesh cert v1\n" followed by the certificate's canonical body.
// Verification re-encodes the fields, so changing any field after signing
// makes Verify fail.
type Signed struct {
	Certificate
	Signature []byte // ed25519.SignatureSize bytes
}

// Issue signs a certificate built from tmpl with the CA key. It fills in
// what tmpl leaves zero: Format, Serial (random), Issuer (from caPriv),
// NotBefore (now minus ClockSkew), NotAfter (NotBefore + DefaultValidity).
// Tag keys (also of WorkloadTags, which is sorted) are lower-cased; a tag
// or workload tag pair given twice is an error. Times are truncated to
// whole seconds. Name and PublicKey are required.
func Issue(caPriv ed25519.PrivateKey, tmpl Certificate) (*Signed, error) {
	if len(caPriv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("issue certificate: CA private key has %d bytes", len(caPriv))
	}
	c := tmpl
	c.Format = CertFormat
	if len(tmpl.WorkloadTags) > 0 {
		c.Format = CertFormatWorkloadTags
	}
	if c.Serial.IsZero() {
		s, err := NewSerial()
		if err != nil {
			return nil, err
		}
		c.Serial = s
	}
	c.Issuer = KeyIDOf(caPriv.Public().(ed25519.PublicKey))
	c.Tags = make(map[string]string, len(tmpl.Tags))
	for k, v := range tmpl.Tags {
		lk := strings.ToLower(k)
		if _, dup := c.Tags[lk]; dup {
			return nil, fmt.Errorf("issue certificate: tag %q given twice", lk)
		}
		c.Tags[lk] = v
	}
	wt, err := normalizeTagPairs(tmpl.WorkloadTags)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	c.WorkloadTags = wt
	if c.NotBefore.IsZero() {
		c.NotBefore = time.Now().Add(-ClockSkew)
	}
	if c.NotAfter.IsZero() {
		c.NotAfter = c.NotBefore.Add(DefaultValidity)
	}
	c.NotBefore = c.NotBefore.Truncate(time.Second).UTC()
	c.NotAfter = c.NotAfter.Truncate(time.Second).UTC()
	c.Address4 = c.Address4.Unmap()
	body, err := c.body()
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	return &Signed{Certificate: c, Signature: ed25519.Sign(caPriv, signingInput(certDomain, body))}, nil
}

// signingInput is domain || body.
func signingInput(domain string, body []byte) []byte {
	return append([]byte(domain), body...)
}

// validate checks every field's range; the error wraps ErrMalformed.
func (c *Certificate) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Format != CertFormat && c.Format != CertFormatWorkloadTags:
		return bad("unsupported certificate format %d", c.Format)
	case !validName(c.Name):
		return bad("name %q: want 1-%d bytes of UTF-8 without spaces or control characters", c.Name, MaxNameLen)
	case c.PublicKey == wgtypes.Key{}:
		return bad("no public key")
	case len(c.Tags) > MaxTags:
		return bad("%d tags (at most %d)", len(c.Tags), MaxTags)
	case c.Address4.IsValid() && (!c.Address4.Is4() || c.Address4.IsUnspecified()):
		return bad("address %s: want an IPv4 address", c.Address4)
	case !validTime(c.NotBefore) || !validTime(c.NotAfter):
		return bad("validity %s - %s: want whole seconds between 1970 and 9999", c.NotBefore, c.NotAfter)
	case !c.NotBefore.Before(c.NotAfter):
		return bad("not_after %s is not after not_before %s", c.NotAfter, c.NotBefore)
	}
	for k, v := range c.Tags {
		if !tagRE.MatchString(k) || k != strings.ToLower(k) || !tagRE.MatchString(v) {
			return bad("tag %q=%q: keys lower-case, keys and values 1-63 of [A-Za-z0-9_./-]", k, v)
		}
	}
	if err := c.validateWorkloadTags(); err != nil {
		return bad("%s", err)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func validTime(t time.Time) bool {
	u := t.Unix()
	return u >= 0 && u <= maxUnix && t.Nanosecond() == 0
}

// body is the canonical encoding (format 1):
//
//	u8 format | fixed[16] serial | fixed[12] issuer | fixed[32] public key |
//	i64 not_before | i64 not_after | u8 len(address4) (0 or 4) + bytes |
//	str name | uvarint ntags, then (str key, str value) by ascending key
//
// Format 2 (CertFormatWorkloadTags) appends
//
//	uvarint npairs (1-MaxWorkloadTags), then (str key, str value) by
//	ascending key, then value
func (c *Certificate) body() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	e := &encoder{b: make([]byte, 0, 160)}
	e.u8(byte(c.Format))
	e.fixed(c.Serial[:])
	e.fixed(c.Issuer[:])
	e.fixed(c.PublicKey[:])
	e.i64(c.NotBefore.Unix())
	e.i64(c.NotAfter.Unix())
	if c.Address4.IsValid() {
		a := c.Address4.As4()
		e.u8(4)
		e.fixed(a[:])
	} else {
		e.u8(0)
	}
	e.str(c.Name)
	e.uvarint(uint64(len(c.Tags)))
	for _, k := range slices.Sorted(maps.Keys(c.Tags)) {
		e.str(k)
		e.str(c.Tags[k])
	}
	if c.Format == CertFormatWorkloadTags {
		encodeTagPairs(e, c.WorkloadTags)
	}
	return e.b, nil
}

// decodeCertBody reads one body from d.
func decodeCertBody(d *decoder) Certificate {
	var c Certificate
	c.Format = int(d.u8("format"))
	if d.err == nil && c.Format != CertFormat && c.Format != CertFormatWorkloadTags {
		d.fail("unsupported certificate format %d", c.Format)
	}
	d.fixed(c.Serial[:], "serial")
	d.fixed(c.Issuer[:], "issuer")
	d.fixed(c.PublicKey[:], "public key")
	c.NotBefore = time.Unix(d.i64("not_before"), 0).UTC()
	c.NotAfter = time.Unix(d.i64("not_after"), 0).UTC()
	switch n := d.u8("address length"); {
	case n == 4:
		var a [4]byte
		d.fixed(a[:], "address")
		c.Address4 = netip.AddrFrom4(a)
	case n != 0:
		d.fail("address length %d", n)
	}
	c.Name = d.str(MaxNameLen, "name")
	n := d.uvarint("tag count")
	if n > MaxTags {
		d.fail("%d tags (at most %d)", n, MaxTags)
		return c
	}
	c.Tags = make(map[string]string, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.str(63, "tag key")
		c.Tags[k] = d.str(63, "tag value")
	}
	if c.Format == CertFormatWorkloadTags {
		c.WorkloadTags = decodeTagPairs(d)
	}
	return c
}

// Marshal returns the compact binary form (body followed by the 64-byte
// signature), about 150 bytes plus name and tags: what a node record
// carries. ParseCertificate reads it back.
func (s *Signed) Marshal() ([]byte, error) {
	body, err := s.body()
	if err != nil {
		return nil, fmt.Errorf("encode certificate: %w", err)
	}
	if len(s.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("encode certificate: %w: signature has %d bytes", ErrMalformed, len(s.Signature))
	}
	return append(body, s.Signature...), nil
}

// PEM returns the file form: the compact form in a "SEGMESH CERTIFICATE"
// PEM block.
func (s *Signed) PEM() ([]byte, error) {
	raw, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: CertPEMType, Bytes: raw}), nil
}

// ParseCertificate decodes a certificate from its PEM file form or its
// compact binary form. It checks structure only (every failure wraps
// ErrMalformed); call Verify before trusting it.
func ParseCertificate(data []byte) (*Signed, error) {
	raw, err := unPEM(data, CertPEMType)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	d := &decoder{b: raw}
	c := decodeCertBody(d)
	sig := d.take(ed25519.SignatureSize, "signature")
	d.end("signature")
	if d.err != nil {
		return nil, fmt.Errorf("parse certificate: %w", d.err)
	}
	s := &Signed{Certificate: c, Signature: bytes.Clone(sig)}
	if err := checkCanonical(s.Marshal, raw); err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return s, nil
}

// checkCanonical requires that the decoded object re-encodes to raw.
func checkCanonical(marshal func() ([]byte, error), raw []byte) error {
	again, err := marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	return nil
}

// unPEM returns the bytes of a PEM block of type typ when data is PEM
// (starts with "-----BEGIN" after white space), else data itself.
func unPEM(data []byte, typ string) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: empty", ErrMalformed)
		}
		return data, nil
	}
	blk, _ := pem.Decode(trimmed)
	if blk == nil {
		return nil, fmt.Errorf("%w: bad PEM", ErrMalformed)
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrMalformed, blk.Type, typ)
	}
	return blk.Bytes, nil
}

// LoadCertificate reads and parses a certificate file (PEM or compact).
func LoadCertificate(path string) (*Signed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	s, err := ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Verify checks, in this order, that the fields are well-formed
// (ErrMalformed), that Issuer is one of cas (ErrUnknownIssuer), that the
// signature verifies (ErrBadSignature) and that now is within
// [NotBefore, NotAfter) (ErrNotYetValid, ErrExpired). It does not consult
// revocations (see RevocationList.Check).
func (s *Signed) Verify(cas []ed25519.PublicKey, now time.Time) error {
	body, err := s.body()
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	key, err := findCA(cas, s.Issuer)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", s.Serial, err)
	}
	if len(s.Signature) != ed25519.SignatureSize || !ed25519.Verify(key, signingInput(certDomain, body), s.Signature) {
		return fmt.Errorf("certificate %s: %w", s.Serial, ErrBadSignature)
	}
	if now.Before(s.NotBefore) {
		return fmt.Errorf("certificate %s: %w (valid from %s)", s.Serial, ErrNotYetValid, s.NotBefore.Format(time.RFC3339))
	}
	if !now.Before(s.NotAfter) {
		return fmt.Errorf("certificate %s: %w (on %s)", s.Serial, ErrExpired, s.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// VerifyFor is Verify plus a check that the certificate is for key
// (ErrKeyMismatch). A daemon in CA mode calls it for its own key at start
// (and refuses to start on error) and for every peer record.
func (s *Signed) VerifyFor(cas []ed25519.PublicKey, key wgtypes.Key, now time.Time) error {
	if err := s.Verify(cas, now); err != nil {
		return err
	}
	if s.PublicKey != key {
		return fmt.Errorf("certificate %s: %w (certified %s, presented %s)", s.Serial, ErrKeyMismatch, s.PublicKey, key)
	}
	return nil
}

// ExpiresWithin reports whether the certificate is expired at now+d, i.e.
// it expires within d from now (or already has).
func (c *Certificate) ExpiresWithin(now time.Time, d time.Duration) bool {
	return !now.Add(d).Before(c.NotAfter)
}
