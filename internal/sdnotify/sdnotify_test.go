package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func recv(t *testing.T, l *net.UnixConn) string {
	t.Helper()
	_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := l.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	l := listen(t, path)
	n := New(func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return path
		}
		return ""
	})
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	if err := n.Notify("READY=1", "STATUS=enforcing"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, l); got != "READY=1\nSTATUS=enforcing" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "segmesh-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	l := listen(t, "\x00"+name)
	n := New(func(string) string { return "@" + name })
	if err := n.Notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, l); got != "STOPPING=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	n := New(func(string) string { return "" })
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyErrors(t *testing.T) {
	n := Notifier{socket: filepath.Join(t.TempDir(), "nobody")}
	if err := n.Notify("READY=1"); err == nil {
		t.Error("no error for a socket nobody listens on")
	}
	if err := n.Notify("READY"); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed assignment: %v", err)
	}
	if err := (Notifier{socket: "relative"}).Notify("READY=1"); err == nil {
		t.Error("no error for a relative socket name")
	}
}

func TestMonotonicUsec(t *testing.T) {
	a := MonotonicUsec()
	if !strings.HasPrefix(a, "MONOTONIC_USEC=") || len(a) <= len("MONOTONIC_USEC=") {
		t.Fatalf("got %q", a)
	}
}
