package peerapi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

type fakeSource struct{}

func (fakeSource) Flows() []api.Flow {
	return []api.Flow{{Peer: "web-1", Verdict: api.VerdictAllowed, Port: 5432}}
}
func (fakeSource) Observed() api.Observed {
	return api.Observed{Node: "db-1", Observations: []api.Observation{{SrcName: "web-1", Port: 5432}}}
}
func (fakeSource) Info() api.PeerInfo { return api.PeerInfo{Name: "db-1", Segments: []string{"db"}} }

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(code string) { c.mu.Lock(); c.m[code]++; c.mu.Unlock() }
func (c *counts) get(code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[code]
}

// serve starts a server on 127.0.0.1 bound to lo (needs root, as the
// daemon: SO_BINDTODEVICE) and returns its port.
func serve(t *testing.T, admitted bool, c *counts) int {
	t.Helper()
	// Find a free port first: the server binds a fixed one.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	s := New(Config{Interface: "lo", Port: port, Admitted: func(a netip.Addr) bool { return admitted && a.IsLoopback() },
		Count: c.add, Log: slog.New(slog.DiscardHandler)}, fakeSource{})
	if err := s.SetAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return port
}

func TestFetchAnswersAndMissing(t *testing.T) {
	c := &counts{m: map[string]int{}}
	port := serve(t, true, c)
	// A node that accepts but never answers: the timeout names it.
	silent, err := net.Listen("tcp", "127.0.0.2:"+itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	cl := NewClient(port, 300*time.Millisecond)
	defer cl.CloseIdle()
	targets := []Target{{"db-1", netip.MustParseAddr("127.0.0.1")}, {"slow-1", netip.MustParseAddr("127.0.0.2")}, {"gone-1", netip.MustParseAddr("127.0.0.3")}}
	ans, missing := Fetch[[]api.Flow](context.Background(), cl, targets, "/v1/flows")
	if len(ans) != 1 || ans[0].Node != "db-1" || len(ans[0].Value) != 1 || ans[0].Value[0].Port != 5432 {
		t.Fatalf("answers = %+v", ans)
	}
	if len(missing) != 2 || missing[0].Node != "gone-1" || missing[1].Node != "slow-1" {
		t.Fatalf("missing = %+v", missing)
	}
	if !strings.Contains(missing[0].Reason, "refused") || !strings.Contains(missing[1].Reason, "no answer within 300ms") {
		t.Fatalf("reasons = %+v", missing)
	}
	info, _ := Fetch[api.PeerInfo](context.Background(), cl, targets[:1], "/v1/info")
	obs, _ := Fetch[api.Observed](context.Background(), cl, targets[:1], "/v1/observed")
	if len(info) != 1 || info[0].Value.Name != "db-1" || len(obs) != 1 || obs[0].Value.Observations[0].SrcName != "web-1" {
		t.Fatalf("info %+v observed %+v", info, obs)
	}
	if got := c.get("200"); got != 3 {
		t.Fatalf("200 counted %d times, want 3", got)
	}
	_, missing = Fetch[api.PeerInfo](context.Background(), cl, targets[:1], "/v1/nothing")
	if len(missing) != 1 || !strings.Contains(missing[0].Reason, "404") || c.get("404") != 1 {
		t.Fatalf("missing = %+v, counts %v", missing, c.m)
	}
}

func TestNotAdmittedGetsNothing(t *testing.T) {
	c := &counts{m: map[string]int{}}
	port := serve(t, false, c)
	// The server resets the connection: the dial itself may already see it.
	if conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(port)); err == nil {
		_, _ = conn.Write([]byte("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if b, _ := io.ReadAll(conn); len(b) != 0 {
			t.Fatalf("a source that is no admitted peer read %q", b)
		}
		conn.Close()
	}
	waitFor(t, func() bool { return c.get(RefusedCode) == 1 })
	cl := NewClient(port, time.Second)
	_, missing := Fetch[api.PeerInfo](context.Background(), cl, []Target{{"db-1", netip.MustParseAddr("127.0.0.1")}}, "/v1/info")
	if len(missing) != 1 || !strings.Contains(missing[0].Reason, "closed unanswered") {
		t.Fatalf("missing = %+v", missing)
	}
	// The server counts after the reset the client already saw.
	waitFor(t, func() bool { return c.get(RefusedCode) == 2 })
	if c.get("200") != 0 {
		t.Fatalf("counts = %v", c.m)
	}
}

func TestBoundToDevice(t *testing.T) {
	// Bound to lo, the socket does not take connections that arrive on
	// another interface; on lo itself it does. Binding to a missing
	// interface is an error naming it.
	s := New(Config{Interface: "segmesh-none0", Port: 1, Log: slog.New(slog.DiscardHandler)}, fakeSource{})
	defer s.Close()
	err := s.SetAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err == nil || !strings.Contains(err.Error(), "segmesh-none0") {
		t.Fatalf("SetAddrs on a missing interface: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 5s")
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
