package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/segmesh/segmesh/api"
)

// noLeaks fails t when goroutines started during it outlive it. Call it
// before newRig: cleanups run last-registered first, so the check runs
// after the node has stopped.
func noLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// A node's whole life on the fake rig — start, policy, control API
// requests, a stream the client abandons, stop — leaves no goroutine.
func TestNodeLifecycleLeaksNoGoroutine(t *testing.T) {
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
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{AppliedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/segments", "/v1/flows", "/v1/peers", "/v1/policy", "/v1/policy/matrix",
		"/v1/policy/history", "/v1/policy/explain?from=self&to=self&port=tcp/1"} {
		resp, err := c.Get("http://segmesh" + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A stream read once and abandoned by the client.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://segmesh/v1/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ev api.Event
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&ev); err != nil || ev.Type != api.EventStatus {
		t.Fatalf("first stream event: %+v %v", ev, err)
	}
	cancel()
	resp.Body.Close()
	// A second stream still open when the node stops: the node ends it.
	resp2, err := c.Get("http://segmesh/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	start := time.Now()
	r.shutdown()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v with a stream open", d)
	}
}
