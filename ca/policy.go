package ca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

const policyDomain = "segmesh policy v1\n"

// PolicySignaturePrefix starts the trailer line of a signed policy file:
//
//	# segmesh-signature: v1 version=N issuer=FINGERPRINT sig=BASE64
//
// It is a YAML comment, so a signed policy file is still a valid policy
// file for acl.Parse as it stands.
const PolicySignaturePrefix = "# segmesh-signature:"

// policyInput is domain || sha256(content) || u64be(version).
func policyInput(content []byte, version uint64) []byte {
	sum := sha256.Sum256(content)
	b := append([]byte(policyDomain), sum[:]...)
	return binary.BigEndian.AppendUint64(b, version)
}

// SignPolicy signs a policy's exact content bytes together with its version
// (>= 1) and returns the signature in standard base64. Because the version
// is signed, nobody can re-send an old signed policy under a new number.
func SignPolicy(caPriv ed25519.PrivateKey, content []byte, version uint64) (string, error) {
	if len(caPriv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("sign policy: CA private key has %d bytes", len(caPriv))
	}
	if version == 0 {
		return "", fmt.Errorf("sign policy: version must be at least 1")
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(caPriv, policyInput(content, version))), nil
}

// VerifyPolicy checks sig (from SignPolicy) over content and version
// against each of cas. Errors wrap ErrMalformed (not a signature, or
// version 0) or ErrBadSignature (no key verifies it).
func VerifyPolicy(cas []ed25519.PublicKey, content []byte, version uint64, sig string) error {
	s, err := decodePolicySig(sig)
	if err != nil {
		return err
	}
	if version == 0 {
		return fmt.Errorf("policy signature: %w: version 0", ErrMalformed)
	}
	in := policyInput(content, version)
	for _, k := range cas {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, in, s) {
			return nil
		}
	}
	return fmt.Errorf("policy version %d: %w", version, ErrBadSignature)
}

func decodePolicySig(sig string) ([]byte, error) {
	s, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return nil, fmt.Errorf("policy signature: %w: want %d bytes of base64", ErrMalformed, ed25519.SignatureSize)
	}
	return s, nil
}

// PolicySignature is the trailer of a signed policy file.
type PolicySignature struct {
	Version uint64 // the signed version (>= 1)
	Issuer  KeyID  // the signing CA key
	Sig     string // SignPolicy's output
}

// Verify checks the signature over content against the CA key named by
// Issuer: ErrUnknownIssuer when it is not among cas, else as VerifyPolicy.
func (p *PolicySignature) Verify(cas []ed25519.PublicKey, content []byte) error {
	key, err := findCA(cas, p.Issuer)
	if err != nil {
		return fmt.Errorf("policy version %d: %w", p.Version, err)
	}
	return VerifyPolicy([]ed25519.PublicKey{key}, content, p.Version, p.Sig)
}

// String returns the trailer line (without its newline).
func (p *PolicySignature) String() string {
	return fmt.Sprintf("%s v1 version=%d issuer=%s sig=%s", PolicySignaturePrefix, p.Version, p.Issuer, p.Sig)
}

// SignPolicyFile returns the signed form of a policy file: its content
// (an existing signature trailer removed, a final newline added if missing)
// followed by the trailer line for version. SplitSignedPolicy on the result
// returns exactly the content that was signed.
func SignPolicyFile(caPriv ed25519.PrivateKey, data []byte, version uint64) ([]byte, error) {
	content, _, err := SplitSignedPolicy(data)
	if err != nil {
		return nil, err
	}
	content = bytes.Clone(content)
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	sig, err := SignPolicy(caPriv, content, version)
	if err != nil {
		return nil, err
	}
	p := PolicySignature{Version: version, Issuer: KeyIDOf(caPriv.Public().(ed25519.PublicKey)), Sig: sig}
	return append(append(content, p.String()...), '\n'), nil
}

// SplitSignedPolicy separates a policy file into the content that was
// signed and its signature trailer: the last non-blank line, when it starts
// with PolicySignaturePrefix. content is data up to that line (a sub-slice
// of data); white space after the trailer is ignored. An unsigned file
// returns data itself and a nil signature. A trailer that does not parse,
// or a signature line anywhere but last (the file was edited after
// signing), is an error wrapping ErrMalformed.
func SplitSignedPolicy(data []byte) (content []byte, sig *PolicySignature, err error) {
	end := len(bytes.TrimRight(data, " \t\r\n"))
	start := bytes.LastIndexByte(data[:end], '\n') + 1
	content = data
	if last := data[start:end]; bytes.HasPrefix(last, []byte(PolicySignaturePrefix)) {
		if sig, err = parsePolicyTrailer(string(last)); err != nil {
			return nil, nil, err
		}
		content = data[:start]
	}
	for i, line := range bytes.Split(content, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte(PolicySignaturePrefix)) {
			return nil, nil, fmt.Errorf("line %d: %w: a %q line that is not the last line (was the file changed after signing?)",
				i+1, ErrMalformed, PolicySignaturePrefix)
		}
	}
	return content, sig, nil
}

func parsePolicyTrailer(line string) (*PolicySignature, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("policy signature line: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	fields := strings.Fields(strings.TrimPrefix(line, PolicySignaturePrefix))
	if len(fields) == 0 || fields[0] != "v1" {
		return nil, bad("want %q followed by v1", PolicySignaturePrefix)
	}
	var p PolicySignature
	var haveVersion, haveIssuer, haveSig bool
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, bad("%q: want key=value", f)
		}
		switch k {
		case "version":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return nil, bad("version %q: want a number >= 1", v)
			}
			p.Version, haveVersion = n, true
		case "issuer":
			id, err := ParseKeyID(v)
			if err != nil {
				return nil, bad("%v", err)
			}
			p.Issuer, haveIssuer = id, true
		case "sig":
			if _, err := decodePolicySig(v); err != nil {
				return nil, bad("sig: want %d bytes of base64", 64)
			}
			p.Sig, haveSig = v, true
		default: // later versions may add fields
		}
	}
	if !haveVersion || !haveIssuer || !haveSig {
		return nil, bad("version, issuer and sig are required")
	}
	return &p, nil
}

// VerifySignedPolicy splits a signed policy file and verifies its
// signature: it returns the signed content and version. An unsigned file is
// an error wrapping ErrUnsigned (CA mode refuses unsigned policies).
func VerifySignedPolicy(cas []ed25519.PublicKey, data []byte) (content []byte, version uint64, err error) {
	content, sig, err := SplitSignedPolicy(data)
	if err != nil {
		return nil, 0, err
	}
	if sig == nil {
		return nil, 0, fmt.Errorf("policy: %w (sign it with segmesh policy sign)", ErrUnsigned)
	}
	if err := sig.Verify(cas, content); err != nil {
		return nil, 0, err
	}
	return content, sig.Version, nil
}
