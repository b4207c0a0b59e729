package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// StateQuarantined is the peer state of a quarantined node (DESIGN.md
// "Quarantine").
const StateQuarantined = "quarantined"

// Quarantined is one node in quarantine, as status lists it.
type Quarantined struct {
	Node      string   `json:"node"`
	PublicKey string   `json:"public_key"`
	Since     string   `json:"since"` // RFC 3339
	Reason    string   `json:"reason"`
	AllowFrom []string `json:"allow_from"`
	By        string   `json:"by"`
	Self      bool     `json:"self,omitempty"` // this node is the one quarantined
}

// QuarantineEntry is one versioned quarantine or release (the wire form of
// package quarantine's Entry).
type QuarantineEntry struct {
	Target    string   `json:"target"`
	Name      string   `json:"name"`
	Action    string   `json:"action"`
	AllowFrom []string `json:"allow_from"`
	Reason    string   `json:"reason"`
	Time      int64    `json:"time"`
	By        string   `json:"by"`
	Signer    string   `json:"signer,omitempty"`
	Signature []byte   `json:"signature,omitempty"`
}

// QuarantineRequest is the body of POST /v1/quarantine.
type QuarantineRequest struct {
	Entry QuarantineEntry `json:"entry"`
}

// QuarantineResult answers POST /v1/quarantine once this node enforces it.
type QuarantineResult struct {
	Node   string `json:"node"`
	Action string `json:"action"`
	Time   int64  `json:"time"`
}

// Quarantine sends a quarantine or release entry (signed in CA mode).
func (c *Client) Quarantine(ctx context.Context, e QuarantineEntry) (*QuarantineResult, error) {
	var r QuarantineResult
	b, err := json.Marshal(QuarantineRequest{Entry: e})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if err := c.do(ctx, http.MethodPost, "/v1/quarantine", bytes.NewReader(b), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// NodeRef names one node (GET /v1/nodes/resolve).
type NodeRef struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// ResolveNode finds the node a name, public key or overlay address means; a
// name several nodes carry is an error listing them.
func (c *Client) ResolveNode(ctx context.Context, node string) (*NodeRef, error) {
	var r NodeRef
	if err := c.do(ctx, http.MethodGet, "/v1/nodes/resolve?node="+url.QueryEscape(node), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
