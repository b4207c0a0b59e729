package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/mesh"
)

const (
	revocationsFile    = "revocations.json"
	docKindRevocations = "revocations"
	// expiryWarning: certificates ending sooner are flagged in status,
	// top and metrics.
	expiryWarning = 30 * 24 * time.Hour
)

// Rejection reasons of CA mode.
const (
	ReasonNoCertificate  = "no_certificate"
	ReasonBadCertificate = "bad_certificate"
	ReasonRevoked        = "revoked"
	ReasonExpired        = "certificate_expired"
)

// trustState is CA mode: the CA keys, this node's certificate and the
// revocation list. A nil *trustState means trust: open.
type trustState struct {
	cas  []ed25519.PublicKey
	cert *ca.Signed
	revs *ca.RevocationList
	// operators may sign quarantines and releases only
	// (trust.operator_keys_file).
	operators []ed25519.PublicKey
}

// loadTrust reads the CA keys, the persisted revocations and this node's
// certificate, and refuses a certificate that is not valid for pub now.
func loadTrust(cfg *config.Config, pub mesh.Key, now time.Time) (*trustState, error) {
	if cfg.Trust.CAFile == "" {
		return nil, nil
	}
	cas, err := ca.LoadCAPublicKeys(cfg.Trust.CAFile)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "trust.ca_file", Err: err}
	}
	revs, dropped, err := ca.LoadRevocationList(filepath.Join(cfg.StateDir, revocationsFile), cas)
	if err != nil {
		return nil, fmt.Errorf("persisted revocations: %w", err)
	}
	_ = dropped // entries of CA keys no longer trusted
	cert, err := ca.LoadCertificate(cfg.Trust.CertFile)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "trust.cert_file", Err: err}
	}
	if err := ca.VerifyNode(cas, revs, cert, pub, now); err != nil {
		return nil, &config.Error{File: cfg.File, Key: "trust.cert_file",
			Err: fmt.Errorf("%s is not a valid certificate for this node's key: %w", cfg.Trust.CertFile, err)}
	}
	var ops []ed25519.PublicKey
	if cfg.Trust.OperatorKeysFile != "" {
		if ops, err = ca.LoadCAPublicKeys(cfg.Trust.OperatorKeysFile); err != nil {
			return nil, &config.Error{File: cfg.File, Key: "trust.operator_keys_file", Err: err}
		}
	}
	return &trustState{cas: cas, cert: cert, revs: revs, operators: ops}, nil
}

// revsVersion is the revocation list's version (0 in trust: open).
func (t *trustState) revsVersion() uint64 {
	if t == nil {
		return 0
	}
	return t.revs.Version()
}

// certWindow is a parsed certificate's validity period [notBefore, notAfter);
// ok is false when no certificate was parsed.
type certWindow struct {
	notBefore, notAfter time.Time
	ok                  bool
}

// verifyPeerCert checks a peer's certificate; it returns the certificate or
// the rejection, and the certificate's validity period whenever it parsed
// (the outcome depends on the time only through it).
func (t *trustState) verifyPeerCert(raw []byte, key mesh.Key, now time.Time) (*ca.Signed, certWindow, *rejection) {
	if len(raw) == 0 {
		return nil, certWindow{}, &rejection{ReasonNoCertificate, "the record carries no certificate"}
	}
	cert, err := ca.ParseCertificate(raw)
	if err != nil {
		return nil, certWindow{}, &rejection{ReasonBadCertificate, err.Error()}
	}
	w := certWindow{notBefore: cert.NotBefore, notAfter: cert.NotAfter, ok: true}
	switch err := ca.VerifyNode(t.cas, t.revs, cert, key, now); {
	case err == nil:
		return cert, w, nil
	case errors.Is(err, ca.ErrRevoked):
		return nil, w, &rejection{ReasonRevoked, err.Error()}
	case errors.Is(err, ca.ErrExpired):
		return nil, w, &rejection{ReasonExpired, err.Error()}
	default:
		return nil, w, &rejection{ReasonBadCertificate, err.Error()}
	}
}

// certExpiry renders a certificate's end and whether it is near.
func certExpiry(c *ca.Signed, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	return c.NotAfter.UTC().Format(time.RFC3339), c.ExpiresWithin(now, expiryWarning)
}
