package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts the handler for src on a free loopback port and returns its
// base URL; the server stops at the end of the test.
func serve(t *testing.T, src Source, ready func() error) string {
	t.Helper()
	reg, rec := NewRegistry(src)
	rec.PolicyApplied(12 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, "127.0.0.1:0", Handler(reg, ready), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A connection the client dialled but never used counts as active
		// for 5 s during a shutdown (net/http): close those first.
		http.DefaultClient.CloseIdleConnections()
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return "http://" + s.Addr()
}

func get(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestHandlerEndpoints(t *testing.T) {
	var notReady atomic.Value
	notReady.Store("")
	base := serve(t, twoPeers(), func() error {
		if s := notReady.Load().(string); s != "" {
			return errors.New(s)
		}
		return nil
	})

	code, body, hdr := get(t, "GET", base+"/metrics")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		`segmesh_peers{state="up"} 1`,
		`segmesh_peer_receive_bytes_total{peer="web-1",public_key="KEYweb1="} 1500`,
		`segmesh_policy_info{hash="sha256:abc",mode="enforce"} 1`,
		`segmesh_policy_apply_duration_seconds_count 1`,
		`segmesh_packets_denied_total{direction="in",dst_segment="db",src_segment="web"} 7`,
		`segmesh_gossip_members 4`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, body, _ := get(t, "GET", base+"/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body, _ := get(t, "GET", base+"/readyz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/readyz ready: %d %q", code, body)
	}
	notReady.Store("nftables table not installed")
	if code, body, _ := get(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable || body != "nftables table not installed" {
		t.Errorf("/readyz not ready: %d %q", code, body)
	}
	if code, _, _ := get(t, "GET", base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while not ready: %d", code)
	}
	if code, _, _ := get(t, "HEAD", base+"/healthz"); code != http.StatusOK {
		t.Errorf("HEAD /healthz: %d", code)
	}
	if code, _, _ := get(t, "POST", base+"/metrics"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", code)
	}
	if code, _, _ := get(t, "GET", base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/: %d", code)
	}
}

func TestHandlerNilReady(t *testing.T) {
	base := serve(t, &fakeSource{}, nil)
	if code, body, _ := get(t, "GET", base+"/readyz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/readyz: %d %q", code, body)
	}
}

func TestServeListenErrorAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), ln.Addr().String(), http.NotFoundHandler(), nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Errorf("Serve on a busy port: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve on a busy port did not return")
	}
	if err := Serve(context.Background(), "not-an-address", http.NotFoundHandler(), nil); err == nil {
		t.Error("Serve accepted a bad address")
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, "127.0.0.1:0", h, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Wait() }()
	// New connections are refused once shutdown began, while the request
	// in flight is still running.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after the context was cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("server stopped before its request finished: %v", err)
	default:
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request: %q", body)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop")
	}
}

// TestPromtoolCheckMetrics runs `promtool check metrics` on a real scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found (CI=true): install Debian's prometheus package: %v", err)
		}
		t.Skipf("promtool not found (install Debian's prometheus package; CI=true makes this a failure): %v", err)
	}
	src := twoPeers()
	src.audited = map[SegmentPair]uint64{{"app,web", NoSegment, false}: 3}
	base := serve(t, src, nil)
	code, body, _ := get(t, "GET", base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out.String(), body)
	}
	// Control: promtool does find problems (a counter without _total).
	bad := exec.Command(promtool, "check", "metrics")
	bad.Stdin = strings.NewReader("# HELP x_bytes A counter.\n# TYPE x_bytes counter\nx_bytes 1\n")
	if outBad, err := bad.CombinedOutput(); err == nil && len(outBad) == 0 {
		t.Errorf("promtool accepted a counter without _total: the check above proves nothing")
	}
}

func TestConcurrentScrapes(t *testing.T) {
	src := twoPeers()
	src.deniedErr = errors.New("boom") // exercises the rate limiter too
	base := serve(t, src, nil)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			resp, err := http.Get(base + "/metrics")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
