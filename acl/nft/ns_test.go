package nft

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/segmesh/segmesh/internal/netnstest"
)

// requireRoot skips a test that needs root, network namespaces and nft(8),
// unless CI=true, where it fails instead.
func requireRoot(t testing.TB) { netnstest.RequireRoot(t, "nft") }

// testNS is a throwaway network namespace with the acl helpers below.
type testNS struct {
	*netnstest.NS
	t testing.TB
}

func newTestNS(t testing.TB) *testNS { return &testNS{NS: netnstest.New(t, "smacl"), t: t} }

// firewall opens a Firewall working in the namespace.
func (ns *testNS) firewall(cfg Config) *Firewall {
	ns.t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{ns.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFirewall(cfg, log, nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(func() { _ = f.Close() })
	return f
}

// gen returns the nftables ruleset generation of the namespace: every
// committed batch increments it by one.
func (ns *testNS) gen() uint32 {
	ns.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		ns.t.Fatal(err)
	}
	g, err := c.GetGen()
	if err != nil {
		ns.t.Fatalf("get nftables generation: %v", err)
	}
	return g.ID
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// installedFirewall returns a throwaway namespace (root only) and a
// Firewall with its table installed there.
func installedFirewall(tb testing.TB) (*testNS, *Firewall) {
	tb.Helper()
	requireRoot(tb)
	ns := newTestNS(tb)
	f := ns.firewall(testConfig())
	if err := f.Install(); err != nil {
		tb.Fatal(err)
	}
	return ns, f
}

func testConfig() Config {
	return Config{
		Interface: "smesh0",
		Network4:  netip.MustParsePrefix("100.80.0.0/16"),
		Network6:  netip.MustParsePrefix("fd5e:6d00::/48"),
	}
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
