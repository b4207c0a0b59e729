package ca

import (
	"errors"

	"github.com/segmesh/segmesh/mesh"
)

// Verification and decoding errors. Functions wrap them with context; test
// with errors.Is. They are distinct so a daemon can show (and count) the
// reason a certificate, revocation or policy was refused.
var (
	// ErrMalformed: the bytes are not a well-formed, canonical object of a
	// format this build understands, or a field is out of its allowed range.
	ErrMalformed = errors.New("malformed")
	// ErrUnknownIssuer: the object names a CA key that is not trusted.
	ErrUnknownIssuer = errors.New("unknown issuer")
	// ErrBadSignature: the signature does not verify against the issuer.
	ErrBadSignature = errors.New("bad signature")
	// ErrExpired: the certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrKeyMismatch: the certificate is for another WireGuard key.
	ErrKeyMismatch = errors.New("certificate is for another key")
	// ErrRevoked: the certificate's serial or key has been revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrUnsigned: a policy carries no signature (CA mode refuses it).
	ErrUnsigned = errors.New("not signed")
	// ErrNoCA: a CA public key file lists no key.
	ErrNoCA = errors.New("no CA public key")
	// ErrKeyPermissions: a private key file is group- or world-accessible.
	ErrKeyPermissions = mesh.ErrKeyPermissions
)
