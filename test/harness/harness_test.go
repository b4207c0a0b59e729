package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnderlay builds two bare nodes, checks they reach each other over the
// bridge, that LinkDown cuts one off and LinkUp restores it, and that Close
// removes every namespace and directory.
func TestUnderlay(t *testing.T) {
	RequireNetns(t)
	c, err := New(Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	a, err := c.AddNode(NodeSpec{Name: "a", Bare: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.AddNode(NodeSpec{Name: "b", Bare: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr.String() != "192.0.2.10" || b.Addr.String() != "192.0.2.11" {
		t.Fatalf("addresses %s %s", a.Addr, b.Addr)
	}
	if len(a.Interface) > 15 || a.Interface == b.Interface || !strings.HasPrefix(a.Interface, c.Prefix()) {
		t.Fatalf("interface names %q %q", a.Interface, b.Interface)
	}
	if _, err := PingWithin(a, b.Addr.String(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr.String()); err == nil {
		t.Fatal("ping succeeded with b's link down")
	}
	if err := b.LinkUp(); err != nil {
		t.Fatal(err)
	}
	if _, err := PingWithin(a, b.Addr.String(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// A process started in a namespace runs there and is stopped by Stop.
	if err := a.StartCommand("sleep", "60"); err != nil {
		t.Fatal(err)
	}
	if !a.Running() {
		t.Fatal("sleep not running")
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if a.Running() || a.ExitError() == nil {
		t.Fatalf("after Stop: running %v, exit %v", a.Running(), a.ExitError())
	}
	if err := b.StartCommand("sleep", "60"); err != nil {
		t.Fatal(err)
	}
	base := c.BaseDir()
	closed = true
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b.Running() {
		t.Error("process survived Close")
	}
	for _, ns := range []string{a.Namespace, b.Namespace, c.Underlay()} {
		if NetnsExists(ns) {
			t.Errorf("namespace %s survived Close", ns)
		}
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base dir %s survived Close: %v", base, err)
	}
}

// TestTeardownDetached: a detached process outlives its Cluster value and
// Teardown stops it and removes everything; a second Teardown is a no-op.
func TestTeardownDetached(t *testing.T) {
	RequireNetns(t)
	base := filepath.Join(t.TempDir(), "demo")
	id, err := randomID(3)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "smt" + id
	t.Cleanup(func() { _ = Teardown(prefix, base) })
	c, err := New(Config{Prefix: prefix, BaseDir: base, Detach: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.AddNode(NodeSpec{Name: "x", Bare: true})
	if err != nil {
		t.Fatal(err)
	}
	// The pid file check wants "segmesh" in the command line.
	if err := n.StartCommand("sh", "-c", "sleep 60; : segmesh"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.PIDPath()); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(prefix, base); err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(5*time.Second, func() error {
		if n.Running() {
			return errors.New("still running")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if NetnsExists(n.Namespace) || NetnsExists(c.Underlay()) {
		t.Error("namespaces survived Teardown")
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base dir survived Teardown: %v", err)
	}
	if err := Teardown(prefix, base); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

func TestParseWGDump(t *testing.T) {
	dump := "cHJpdg==\tUFVC\t51820\toff\n" +
		"UEVFUjE=\t(none)\t192.0.2.11:51820\t100.80.1.2/32,fd5e:6d00::1/128\t1700000000\t100\t200\toff\n" +
		"UEVFUjI=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
	d, err := parseWGDump(dump)
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != "UFVC" || d.ListenPort != 51820 || len(d.Peers) != 2 {
		t.Fatalf("%+v", d)
	}
	p := d.Peers["UEVFUjE="]
	if p.LatestHandshake.Unix() != 1700000000 || p.RxBytes != 100 || p.TxBytes != 200 || len(p.AllowedIPs) != 2 {
		t.Errorf("%+v", p)
	}
	if q := d.Peers["UEVFUjI="]; !q.LatestHandshake.IsZero() || q.AllowedIPs != nil {
		t.Errorf("%+v", q)
	}
	if _, err := parseWGDump(""); err == nil {
		t.Error("empty dump accepted")
	}
}

func TestEditConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("name: x\ngossip:\n  advertise: 192.0.2.1\n  join: [a]\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := EditConfig(p, map[string]any{"log_level": "debug", "gossip": map[string]any{"join": []string{"b"}}}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	g := m["gossip"].(map[string]any)
	if m["name"] != "x" || m["log_level"] != "debug" || g["advertise"] != "192.0.2.1" || g["join"].([]any)[0] != "b" {
		t.Errorf("%v", m)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	if err := WaitFor(time.Second, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("err %v after %d calls", err, n)
	}
	err := WaitFor(300*time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("timeout error %v", err)
	}
	start := time.Now()
	err = WaitFor(10*time.Second, func() error { return Abort(errors.New("fatal")) })
	if err == nil || err.Error() != "fatal" || time.Since(start) > time.Second {
		t.Errorf("abort: %v after %v", err, time.Since(start))
	}
}

// TestSpawnAndNamespace: a spawned program runs in the extra namespace,
// WaitOutput sees its output, Stop ends it, and Close deletes the namespace.
func TestSpawnAndNamespace(t *testing.T) {
	RequireNetns(t)
	c, err := New(Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ns, err := c.AddNamespace("ctr")
	if err != nil {
		t.Fatal(err)
	}
	if ns != c.Prefix()+"-ctr" || !NetnsExists(ns) {
		t.Fatalf("namespace %q (exists %v)", ns, NetnsExists(ns))
	}
	if _, err := c.AddNamespace("ctr"); err == nil {
		t.Error("second AddNamespace with the same name succeeded")
	}
	// Only loopback: the program runs inside the new namespace.
	p, err := Spawn(ns, filepath.Join(c.BaseDir(), "p.log"), "sh", "-c", "ip -o link show | wc -l; echo started; sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput("started", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := p.Output(); !strings.HasPrefix(out, "1\n") {
		t.Errorf("links seen by the program: %q, want only lo", out)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if p.Running() || p.ExitError() == nil {
		t.Errorf("after Stop: running %v, exit %v", p.Running(), p.ExitError())
	}
	if err := p.WaitOutput("never printed", time.Second); err == nil {
		t.Error("WaitOutput on an exited process succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if NetnsExists(ns) {
		t.Errorf("namespace %s survived Close", ns)
	}
}
