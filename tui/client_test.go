package tui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

// fakeDaemon serves the control API's read endpoints on a unix socket; its
// stream sends a status event (with the given member count) every 20ms.
type fakeDaemon struct {
	srv  *http.Server
	done chan struct{}
}

func startDaemon(t *testing.T, sock string, members int, streamEvents int) *fakeDaemon {
	t.Helper()
	mux := http.NewServeMux()
	reply := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(v) }
	}
	mux.HandleFunc("GET /v1/segments", reply(fixtureSegments()))
	mux.HandleFunc("GET /v1/policy/matrix", reply(fixtureMatrix()))
	mux.HandleFunc("GET /v1/flows", reply(fixtureFlows()))
	mux.HandleFunc("GET /v1/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; streamEvents == 0 || i < streamEvents; i++ {
			ev := fixtureStatus(1)
			ev.Status.Members = members
			if err := enc.Encode(ev); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	d := &fakeDaemon{srv: &http.Server{Handler: mux}, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(l)
	}()
	t.Cleanup(d.stop)
	return d
}

func (d *fakeDaemon) stop() {
	_ = d.srv.Close()
	<-d.done
}

func shortSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tui")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// TestClientSourceSurvivesDaemonRestart runs the UI against a real control
// socket, stops the daemon and starts a new one on the same path.
func TestClientSourceSurvivesDaemonRestart(t *testing.T) {
	sock := shortSocket(t)
	d := startDaemon(t, sock, 5, 0)
	m := New(ClientSource(api.NewClient(sock)), testOptions())
	tm := startProgramModel(t, m, 80, 24)
	waitOutput(t, tm, "● live", "5 members", "role=web")

	d.stop()
	waitOutput(t, tm, "reconnecting…")
	startDaemon(t, sock, 7, 0)
	waitOutput(t, tm, "● live", "7 members")

	tm.Type("q")
	tm.WaitFinished(t)
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: an I/O command is stuck")
	}
}

func TestClientStream(t *testing.T) {
	sock := shortSocket(t)
	startDaemon(t, sock, 4, 2)
	c := api.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := c.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	for i := range 2 {
		ev, err := es.Next()
		if err != nil || ev.Type != api.EventStatus || ev.Status == nil || ev.Status.Members != 4 {
			t.Fatalf("event %d: %+v %v", i, ev, err)
		}
	}
	if _, err := es.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want io.EOF", err)
	}
	segs, err := c.Segments(ctx)
	if err != nil || len(segs) != len(fixtureSegments()) {
		t.Fatalf("segments: %d %v", len(segs), err)
	}
	pv, err := c.Matrix(ctx)
	if err != nil || pv.Version != 3 || len(pv.Matrix) != len(fixtureMatrix().Matrix) {
		t.Fatalf("matrix: %+v %v", pv, err)
	}
	fl, err := c.Flows(ctx)
	if err != nil || len(fl) != len(fixtureFlows()) || !fl[0].LastSeen.Equal(t0.Add(-3*time.Second)) {
		t.Fatalf("flows: %+v %v", fl, err)
	}
	if out := fl[2]; out.Direction != api.DirectionOut || out.Workload != "postgres" || out.PID != 812 || out.UID == nil || *out.UID != 109 {
		t.Fatalf("egress flow over the client: %+v", out)
	}
}

func TestClientStreamErrors(t *testing.T) {
	sock := shortSocket(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stream", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(api.Error{Error: "read-only group may not stream"})
	})
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	c := api.NewClient(sock)
	if _, err := c.Stream(context.Background()); err == nil || !strings.Contains(err.Error(), "may not stream") {
		t.Fatalf("non-2xx stream: %v", err)
	}
	if _, err := api.NewClient(sock + ".missing").Stream(context.Background()); err == nil {
		t.Fatal("stream to a missing socket succeeded")
	}
	// A cancelled context ends a Next blocked on a silent stream.
	sock2 := shortSocket(t)
	l2, err := net.Listen("unix", sock2)
	if err != nil {
		t.Fatal(err)
	}
	mux2 := http.NewServeMux()
	mux2.HandleFunc("GET /v1/stream", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(fixtureStatus(0))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv2 := &http.Server{Handler: mux2}
	done2 := make(chan struct{})
	go func() { defer close(done2); _ = srv2.Serve(l2) }()
	defer func() { srv2.Close(); <-done2 }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	es, err := api.NewClient(sock2).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if _, err := es.Next(); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := es.Next(); res <- err }()
	select {
	case err := <-res:
		t.Fatalf("Next returned before cancel: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Next after cancel returned an event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after cancel")
	}
}
