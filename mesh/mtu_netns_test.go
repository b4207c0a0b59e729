package mesh

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestUnderlayMTUKernel reads path MTUs from a real routing table in a
// fresh namespace: a route with `mtu 1400`, a route without one, the
// link's own address, and a route whose mtu exceeds the link's.
func TestUnderlayMTUKernel(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	run(t, "ip", "-n", ns, "link", "add", "u0", "mtu", "1500", "type", "veth", "peer", "name", "u1")
	run(t, "ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "u0")
	run(t, "ip", "-n", ns, "link", "set", "u1", "up")
	run(t, "ip", "-n", ns, "link", "set", "u0", "up")
	run(t, "ip", "-n", ns, "route", "add", "198.51.100.0/24", "dev", "u0")
	run(t, "ip", "-n", ns, "route", "add", "198.51.100.7/32", "dev", "u0", "mtu", "1400")
	run(t, "ip", "-n", ns, "route", "add", "198.51.100.8/32", "dev", "u0", "mtu", "lock", "9000")

	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, c := range []struct {
		addr string
		want int
	}{
		{"198.51.100.7", 1400}, // the route's mtu
		{"198.51.100.9", 1500}, // the link's
		{"198.51.100.8", 1500}, // route mtu above the link's: the link limits
		{"192.0.2.1", 1500},    // our own address: its link, not lo's 65536
		{"192.0.2.20", 1500},   // on-link
	} {
		got, err := underlayMTU(h, netip.MustParseAddr(c.addr))
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.addr, got, err, c.want)
		}
	}
	run(t, "ip", "-n", ns, "route", "del", "198.51.100.7/32")
	if got, err := underlayMTU(h, netip.MustParseAddr("198.51.100.7")); err != nil || got != 1500 {
		t.Errorf("after removing the mtu route: got %d, %v; want 1500", got, err)
	}
	if _, err := underlayMTU(h, netip.MustParseAddr("203.0.113.1")); err == nil {
		t.Error("no route: no error")
	}
}
