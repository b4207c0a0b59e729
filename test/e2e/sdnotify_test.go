package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestSystemdNotify runs the daemon as systemd's Type=notify would: with
// NOTIFY_SOCKET naming a datagram socket the test listens on. READY=1 must
// come once the node enforces (its nft table and interface in place), a
// SIGHUP must be framed by RELOADING=1 and READY=1, and SIGTERM must
// announce STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	next := func(want string) string {
		t.Helper()
		_ = l.SetReadDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 4096)
		n, err := l.Read(b)
		if err != nil {
			t.Fatalf("waiting for %s from the daemon: %v", want, err)
		}
		msg := string(b[:n])
		if !strings.Contains("\n"+msg+"\n", "\n"+want+"\n") {
			t.Fatalf("daemon sent %q, want a datagram with %s", msg, want)
		}
		return msg
	}
	start := time.Now()
	if err := a.StartCommand("env", "NOTIFY_SOCKET="+sock, bins.Segmesh, "up", "-c", a.ConfigPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	next("READY=1")
	t.Logf("TIMING sd_notify READY=1 %v after start", time.Since(start).Round(time.Millisecond))
	// Ready means enforcing: the table and the interface exist now.
	if out, err := a.Exec("nft", "list", "chain", "inet", "segmesh", "mesh_in"); err != nil {
		t.Fatalf("READY=1 before the nft table is in place: %v: %s", err, out)
	}
	if out, err := a.Exec("ip", "link", "show", "dev", a.Interface); err != nil || !strings.Contains(string(out), "UP") {
		t.Fatalf("READY=1 before the interface is up: %v: %s", err, out)
	}

	if err := syscall.Kill(a.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if msg := next("RELOADING=1"); !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	next("READY=1")

	if err := syscall.Kill(a.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
}
