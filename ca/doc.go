// Package ca is segmesh's mesh certificate authority: an Ed25519 CA key pair,
// node certificates that attest a WireGuard public key's name, tags,
// (optionally) fixed overlay IPv4 and the tag pairs its workloads may carry, signed revocations gathered in a
// grow-only revocation list, and signatures over policy documents.
//
// Cryptography is limited to ed25519.Sign / ed25519.Verify (standard library)
// over canonical bytes. Every signed object is a small, versioned binary body
// (see wire.go) prefixed, for signing only, with a domain-separation string:
//
//	"segmesh cert v1\n"        certificates
//	"segmesh revocation v1\n"  revocation entries
//	"segmesh policy v1\n"      policies (sha256 of the content + version)
//
// so that a signature made for one kind of object can never be replayed as
// another. Decoding is strict: a body that does not re-encode to the same
// bytes is malformed, so every object has exactly one encoding.
//
// The CA private key is meant to stay off the fleet: certificates, revocation
// entries and policy signatures can all be produced offline and carried to
// the nodes as files. Nodes only need the CA public key(s) (trust.ca_file);
// several may be listed during a CA rotation.
//
// The package does no I/O beyond the explicit file helpers, logs nothing and
// keeps no global state; RevocationList is safe for concurrent use, all
// other values are plain data.
package ca
