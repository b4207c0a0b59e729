package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Revoke hands a signed revocation entry (PEM or compact form) to the
// daemon with POST /v1/revocations. A duplicate is not an error: the result
// says Added false.
func (c *Client) Revoke(ctx context.Context, signed []byte) (*RevocationResult, error) {
	b, err := json.Marshal(RevokeRequest{Entry: signed})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	var r RevocationResult
	if err := c.do(ctx, http.MethodPost, "/v1/revocations", bytes.NewReader(b), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Revocations fetches the daemon's revocation list (GET /v1/revocations).
func (c *Client) Revocations(ctx context.Context) (*Revocations, error) {
	var r Revocations
	if err := c.do(ctx, http.MethodGet, "/v1/revocations", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
