package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DocumentFormat is the policy document format this build writes; decoders
// accept any format >= 1 and ignore unknown fields (rolling upgrades).
const DocumentFormat = 1

// Document is a policy as it travels through the mesh and is persisted:
// content plus version, hash, who applied it and when.
type Document struct {
	Format    int       `json:"v"`
	Version   uint64    `json:"version"`
	Hash      string    `json:"hash"` // Hash(Content)
	Content   string    `json:"content"`
	AppliedBy string    `json:"applied_by"`
	Time      time.Time `json:"time"`
	Signature string    `json:"signature,omitempty"` // CA mode
}

// ErrBadDocument wraps every document decode or validation failure.
var ErrBadDocument = errors.New("bad policy document")

// NewDocument builds a document for content.
func NewDocument(content []byte, version uint64, appliedBy string, now time.Time) *Document {
	return &Document{Format: DocumentFormat, Version: version, Hash: Hash(content), Content: string(content),
		AppliedBy: appliedBy, Time: now.UTC()}
}

// Newer reports whether d supersedes cur: a greater version, or the same
// version with a higher hash. Every document is newer than none.
func (d *Document) Newer(cur *Document) bool {
	if cur == nil {
		return true
	}
	if d.Version != cur.Version {
		return d.Version > cur.Version
	}
	return d.Hash > cur.Hash
}

// Encode returns the wire form.
func (d *Document) Encode() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode policy document: %w", err)
	}
	return b, nil
}

// DecodeDocument parses a document and checks that its hash matches its
// content and that the content is a valid policy, which it returns.
func DecodeDocument(b []byte) (*Document, *Policy, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	if d.Format < 1 || d.Version < 1 {
		return nil, nil, fmt.Errorf("%w: format %d version %d", ErrBadDocument, d.Format, d.Version)
	}
	if h := Hash([]byte(d.Content)); h != d.Hash {
		return nil, nil, fmt.Errorf("%w: hash %s does not match content (%s)", ErrBadDocument, d.Hash, h)
	}
	p, err := Parse(fmt.Sprintf("policy v%d", d.Version), []byte(d.Content))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	return &d, p, nil
}
