package api

// RevokeRequest is the body of POST /v1/revocations: one CA-signed
// revocation entry, as `segmesh cert revoke --out` writes it (PEM) or in its
// compact binary form. The daemon verifies it against its trust.ca_file keys,
// adds it to its revocation list, persists and gossips the list.
type RevokeRequest struct {
	Entry []byte `json:"entry"` // base64 in JSON
}

// RevocationResult is the answer to POST /v1/revocations.
type RevocationResult struct {
	Added   bool   `json:"added"`   // false: the node already had this entry (a no-op)
	Target  string `json:"target"`  // what is revoked: "serial <hex>" or "key <base64>"
	Version uint64 `json:"version"` // the node's revocation list version (entry count) afterwards
}

// Revocations is GET /v1/revocations: the node's revocation list.
type Revocations struct {
	Version uint64            `json:"version"`
	Entries []RevocationEntry `json:"entries"`
}

// RevocationEntry is one revocation; exactly one of Serial and PublicKey is
// set.
type RevocationEntry struct {
	Serial    string `json:"serial,omitempty"`     // certificate serial, hex
	PublicKey string `json:"public_key,omitempty"` // WireGuard public key, base64
	Reason    string `json:"reason,omitempty"`
	Time      string `json:"time"`   // RFC 3339
	Issuer    string `json:"issuer"` // CA key fingerprint
}
