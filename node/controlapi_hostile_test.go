package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

// Malformed requests on the control socket: every one gets a 4xx answer
// whose body is the JSON error object {"error": "..."}, and the daemon keeps
// answering afterwards.

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// wantJSONError sends req and checks a 4xx with a JSON error body.
func wantJSONError(t *testing.T, c *http.Client, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://segmesh"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %.60s: %v", method, path, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %.60s: read: %v", method, path, err)
		return
	}
	if resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Errorf("%s %.60s (body %.40q): status %d, want 4xx; body %.200s", method, path, body, resp.StatusCode, b)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %.60s: %d with Content-Type %q: %.200s", method, path, resp.StatusCode, ct, b)
		return
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Errorf("%s %.60s: %d body is not a JSON object: %v: %.200s", method, path, resp.StatusCode, err, b)
		return
	}
	if msg, ok := obj["error"].(string); !ok || msg == "" || len(obj) != 1 {
		t.Errorf("%s %.60s: %d body is not {\"error\": \"...\"}: %.200s", method, path, resp.StatusCode, b)
	}
}

func statusOK(t *testing.T, c *http.Client) {
	t.Helper()
	resp, err := c.Get("http://segmesh/v1/status")
	if err != nil {
		t.Fatalf("status after hostile requests: %v", err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK || st.Self.Name != "self" {
		t.Fatalf("status after hostile requests: %d %v %+v", resp.StatusCode, err, st.Self)
	}
}

func TestControlAPIMalformedRequests(t *testing.T) {
	noLeaks(t)
	r := newRig(t, t.TempDir(), "")
	c := unixClient(r.cfg.ControlSocket)
	defer c.CloseIdleConnections()
	waitFor(t, "the control socket", func() bool {
		resp, err := c.Get("http://segmesh/v1/status")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	// Malformed JSON bodies on every endpoint that reads one.
	for _, path := range []string{"/v1/policy", "/v1/revocations", "/v1/policy/diff"} {
		for _, body := range []string{"", "{", "null", "{}", "not json", "[]", `"str"`, "42", `{"content": 5}`, `{"entry": "%%%"}`,
			`{"content": "x", "expect_version": "one"}`, `{"content": "x", "expect_version": -1}`, "\x00\xff\xfe",
			`{"content": "` + strings.Repeat(`\u00`, 3)} {
			wantJSONError(t, c, "POST", path, body)
		}
	}
	// Well-formed JSON, invalid content.
	wantJSONError(t, c, "POST", "/v1/policy", `{"content": "mode: enforce\nbogus: 1\n"}`)
	wantJSONError(t, c, "POST", "/v1/policy", `{"content": "rules: [\n"}`)
	wantJSONError(t, c, "POST", "/v1/policy/diff", `{"content": "segments: 7\n"}`)
	wantJSONError(t, c, "POST", "/v1/revocations", `{"entry": "AAECAwQ="}`)

	// Huge bodies: beyond the limits the handlers read (4 MiB, 1 MiB).
	huge := `{"content": "` + strings.Repeat("a", 6<<20) + `"}`
	wantJSONError(t, c, "POST", "/v1/policy", huge)
	wantJSONError(t, c, "POST", "/v1/policy/diff", huge)
	wantJSONError(t, c, "POST", "/v1/revocations", `{"entry": "`+strings.Repeat("A", 2<<20)+`"}`)
	wantJSONError(t, c, "POST", "/v1/policy", strings.Repeat("[", 1<<20)) // deep nesting

	// Wrong methods and unknown paths.
	for _, mp := range [][2]string{
		{"POST", "/v1/status"}, {"DELETE", "/v1/status"}, {"PUT", "/v1/policy"}, {"PATCH", "/v1/policy"},
		{"GET", "/v1/reload"}, {"GET", "/v1/revocations/x"}, {"DELETE", "/v1/policy"}, {"GET", "/"},
		{"GET", "/v2/status"}, {"GET", "/v1/statusx"}, {"GET", "/v1/policy/explain/extra"},
		{"GET", "/v1/" + strings.Repeat("x", 8000)}, {"OPTIONS", "/v1/status"}, {"BREW", "/v1/status"},
	} {
		wantJSONError(t, c, mp[0], mp[1], "")
	}

	// explain with missing or garbage parameters.
	for _, q := range []string{
		"", "from=self", "from=self&to=self", "from=self&to=self&port=", "from=self&to=self&port=tcp/99999",
		"from=self&to=self&port=tcp/-1", "from=self&to=self&port=tcp/0", "from=self&to=self&port=any",
		"from=self&to=self&port=tcp/1-2", "from=self&to=self&port=sctp/5", "from=self&to=self&port=icmp/5",
		"from=nobody&to=self&port=tcp/80", "from=self&to=10.0.0.1&port=tcp/80", "from=%zz&to=self&port=tcp/80",
		"from=self&to=self&port=tcp%2F80%00", "from=" + strings.Repeat("a", 50000) + "&to=self&port=tcp/80",
		"from=self&to=self&port=" + url.QueryEscape("tcp/80\n"),
	} {
		wantJSONError(t, c, "GET", "/v1/policy/explain?"+q, "")
	}
	// The same request, well-formed, is answered: the errors above are the
	// parameters' fault.
	resp, err := c.Get("http://segmesh/v1/policy/explain?from=self&to=self&port=tcp/80")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("well-formed explain: %v %v", err, resp)
	}
	resp.Body.Close()

	statusOK(t, c)
	if st := r.n.Status(); st.Policy.Version != 0 {
		t.Fatalf("a malformed request changed the policy: %+v", st.Policy)
	}
}

// Garbage that is not HTTP at all, and requests that never finish, do not
// take the control socket down (net/http answers those in plain text: the
// JSON contract starts once a request parses).
func TestControlAPISurvivesRawGarbage(t *testing.T) {
	noLeaks(t)
	r := newRig(t, t.TempDir(), "")
	c := unixClient(r.cfg.ControlSocket)
	defer c.CloseIdleConnections()
	waitFor(t, "the control socket", func() bool {
		resp, err := c.Get("http://segmesh/v1/status")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	for _, raw := range [][]byte{
		[]byte("\x00\x01\x02garbage\r\n\r\n"),
		[]byte("GET /v1/status HTTP/9.9\r\n\r\n"),
		[]byte("POST /v1/policy HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
		[]byte("POST /v1/policy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
		append([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: "), bytes.Repeat([]byte("a"), 2<<20)...),
	} {
		conn, err := net.Dial("unix", r.cfg.ControlSocket)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write(raw)
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err == nil && !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 505") {
			t.Errorf("%.40q: answered %q, want a 4xx (or 505)", raw, line)
		}
	}
	// A request that never completes holds one connection, not the server.
	stalled, err := net.Dial("unix", r.cfg.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte("POST /v1/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	statusOK(t, c)
}
