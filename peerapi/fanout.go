package peerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/segmesh/segmesh/api"
)

// Timeout is how long a fleet request waits for each node.
const Timeout = 2 * time.Second

// maxBody bounds one node's answer (16,384 aggregates are a few MB).
const maxBody = 64 << 20

// Target is a node to ask: its name and an overlay address.
type Target struct {
	Name string
	Addr netip.Addr
}

// Answer is one node's decoded answer.
type Answer[T any] struct {
	Node  string
	Value T
}

// Client asks peers' peer APIs. The zero value is not usable: see NewClient.
type Client struct {
	port    int
	timeout time.Duration
	http    *http.Client
}

// NewClient returns a client for peer APIs on port, each request bounded
// by timeout (Timeout when 0).
func NewClient(port int, timeout time.Duration) *Client {
	if timeout == 0 {
		timeout = Timeout
	}
	tr := &http.Transport{DialContext: (&net.Dialer{}).DialContext, MaxIdleConnsPerHost: 1,
		IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: timeout, DisableCompression: true}
	return &Client{port: port, timeout: timeout, http: &http.Client{Transport: tr}}
}

// CloseIdle closes idle connections.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// Fetch asks every target for path in parallel, each within the client's
// timeout, and decodes the answers into T. It returns the answers in the
// targets' order and the targets that did not answer, with why.
func Fetch[T any](ctx context.Context, c *Client, targets []Target, path string) ([]Answer[T], []api.Missing) {
	type result struct {
		val     T
		missing string
	}
	res := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := get[T](ctx, c, t, path)
			if err != nil {
				res[i].missing = err.Error()
				return
			}
			res[i].val = v
		}()
	}
	wg.Wait()
	var out []Answer[T]
	missing := []api.Missing{}
	for i, t := range targets {
		if res[i].missing != "" {
			missing = append(missing, api.Missing{Node: t.Name, Reason: res[i].missing})
			continue
		}
		out = append(out, Answer[T]{Node: t.Name, Value: res[i].val})
	}
	slices.SortFunc(missing, func(a, b api.Missing) int { return cmpString(a.Node, b.Node) })
	return out, missing
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func get[T any](ctx context.Context, c *Client, t Target, path string) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(t.Addr.String(), strconv.Itoa(c.port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return zero, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return zero, errors.New(reason(err, c.timeout, c.port))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return zero, errors.New(reason(err, c.timeout, c.port))
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return zero, fmt.Errorf("answered %d: %s", resp.StatusCode, e.Error)
		}
		return zero, fmt.Errorf("answered %s", resp.Status)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return zero, fmt.Errorf("bad answer: %w", err)
	}
	return v, nil
}

// reason says in an operator's words why a node did not answer.
func reason(err error, timeout time.Duration, port int) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no answer within %v (a rule must admit tcp/%d to it from this node; or it is down)", timeout, port)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection refused on tcp/%d (no rule admits it from this node, or its peer API is off)", port)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed unanswered (it does not count this node as an admitted peer)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable over the mesh"
	}
	return err.Error()
}
