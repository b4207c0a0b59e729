package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// serveFake serves h as the daemon's control API on a fresh unix socket
// until the test ends (the server is closed and its goroutine waited for)
// and returns the socket's path.
func serveFake(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "smcli") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return sock
}
