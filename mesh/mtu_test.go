package mesh

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestAutoMTUFake(t *testing.T) {
	s := newFakeSystem(false)
	eth := s.net.addLink("eth0", "veth", 1500)
	small := s.net.addLink("eth1", "veth", 1340)
	if err := s.net.AddrReplace(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: eth.index}},
		&netlink.Addr{IPNet: ipNet(pfx("192.0.2.1/24"))}); err != nil {
		t.Fatal(err)
	}
	if err := s.net.AddrReplace(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: small.index}},
		&netlink.Addr{IPNet: ipNet(pfx("198.51.100.1/24"))}); err != nil {
		t.Fatal(err)
	}
	if err := s.net.RouteAdd(&netlink.Route{LinkIndex: eth.index, Dst: ipNet(pfx("203.0.113.0/24"))}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		want int // 0: error
	}{
		{"192.0.2.1", 1420},        // held by eth0
		{"::ffff:192.0.2.1", 1420}, // same, mapped
		{"203.0.113.9", 1420},      // not held: the route's link
		{"198.51.100.1", 0},        // 1340-80 < 1280
		{"2001:db8::1", 0},         // no link, no route
	} {
		got, err := autoMTU(s.net, netip.MustParseAddr(c.addr))
		if c.want == 0 {
			if err == nil {
				t.Errorf("%s: got %d, want an error", c.addr, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.addr, got, err, c.want)
		}
	}
}

// TestAutoMTULoopback reads the real kernel (no root needed).
func TestAutoMTULoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := AutoMTU(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if got != lo.MTU-Overhead {
		t.Fatalf("AutoMTU(127.0.0.1) = %d, want lo's %d - 80", got, lo.MTU)
	}
}
