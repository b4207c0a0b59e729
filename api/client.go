package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a daemon's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the unix socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{socket: path, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Status fetches /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Reload asks the daemon to re-read its configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://segmesh"+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s: %w (is the daemon running?)", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// Policy fetches the active policy.
func (c *Client) Policy(ctx context.Context) (*PolicyDocument, error) {
	var p PolicyDocument
	if err := c.do(ctx, http.MethodGet, "/v1/policy", nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// PolicyHistory fetches past policies, oldest first.
func (c *Client) PolicyHistory(ctx context.Context) ([]PolicyDocument, error) {
	var h []PolicyDocument
	if err := c.do(ctx, http.MethodGet, "/v1/policy/history", nil, &h); err != nil {
		return nil, err
	}
	return h, nil
}

// ApplyPolicy hands a policy to the daemon and returns once it is active there.
func (c *Client) ApplyPolicy(ctx context.Context, req ApplyRequest) (*PolicyDocument, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	var p PolicyDocument
	if err := c.do(ctx, http.MethodPost, "/v1/policy", bytes.NewReader(b), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Explain asks for the verdict of FROM → TO on proto/port.
func (c *Client) Explain(ctx context.Context, from, to, port string) (*Explanation, error) {
	q := url.Values{"from": {from}, "to": {to}, "port": {port}}
	var e Explanation
	if err := c.do(ctx, http.MethodGet, "/v1/policy/explain?"+q.Encode(), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Segments fetches /v1/segments: every segment of the active policy with its
// members.
func (c *Client) Segments(ctx context.Context) ([]SegmentView, error) {
	var s []SegmentView
	if err := c.do(ctx, http.MethodGet, "/v1/segments", nil, &s); err != nil {
		return nil, err
	}
	return s, nil
}

// Matrix fetches /v1/policy/matrix: the active policy's segment × segment
// matrix of allowed ports.
func (c *Client) Matrix(ctx context.Context) (*PolicyView, error) {
	var v PolicyView
	if err := c.do(ctx, http.MethodGet, "/v1/policy/matrix", nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Flows fetches /v1/flows: denied and audited flow aggregates, newest first.
func (c *Client) Flows(ctx context.Context) ([]Flow, error) {
	var f []Flow
	if err := c.do(ctx, http.MethodGet, "/v1/flows", nil, &f); err != nil {
		return nil, err
	}
	return f, nil
}

// EventStream reads the NDJSON events of GET /v1/stream. It is not safe for
// concurrent use; Close it when done (cancelling the context given to
// Stream also ends it).
type EventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Stream opens GET /v1/stream. It returns once the daemon has answered; the
// events are then read with Next until ctx is done or the connection ends.
// Unlike the other calls it has no overall timeout.
func (c *Client) Stream(ctx context.Context) (*EventStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://segmesh/v1/stream", nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	// A copy of the client without its timeout: the timeout covers reading
	// the body, which for a stream lasts as long as the connection.
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is the daemon running?)", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("/v1/stream: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return &EventStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Next blocks for the next event. It returns io.EOF when the daemon ended
// the stream cleanly, and another error when the connection broke, the
// context was cancelled or a line was not a valid event; after an error the
// stream is finished.
func (s *EventStream) Next() (Event, error) {
	var ev Event
	if err := s.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.EOF) {
			return Event{}, io.EOF
		}
		return Event{}, fmt.Errorf("read /v1/stream: %w", err)
	}
	return ev, nil
}

// Close ends the stream and releases its connection.
func (s *EventStream) Close() error {
	return s.body.Close()
}

// Suggest asks for rules that would allow the observed denied and audited
// flows. With fleet, from every node's observations (Missing names who did
// not answer); with auditOnly, from the audited ones only.
func (c *Client) Suggest(ctx context.Context, fleet, auditOnly bool) (*Suggestion, error) {
	var s Suggestion
	q := url.Values{}
	if fleet {
		q.Set("fleet", "true")
	}
	if auditOnly {
		q.Set("audit_only", "true")
	}
	path := "/v1/policy/suggest"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Diff compares a proposed policy with the active one.
// With fleet, against every node's observations.
func (c *Client) Diff(ctx context.Context, content string, fleet bool) (*PolicyDiff, error) {
	b, err := json.Marshal(DiffRequest{Content: content, Fleet: fleet})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	var d PolicyDiff
	if err := c.do(ctx, http.MethodPost, "/v1/policy/diff", bytes.NewReader(b), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RemoveNode force-removes a dead or departed node everywhere.
func (c *Client) RemoveNode(ctx context.Context, node string) (*RemoveResult, error) {
	b, err := json.Marshal(RemoveRequest{Node: node})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	var r RemoveResult
	if err := c.do(ctx, http.MethodPost, "/v1/nodes/remove", bytes.NewReader(b), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
