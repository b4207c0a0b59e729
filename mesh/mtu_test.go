package mesh

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mtuNet is a fakeNet with eth0 (1500, 192.0.2.1/24), eth1 (1340,
// 198.51.100.1/24), lo (65536) and routes: 192.0.2.1 local via lo,
// 203.0.113.14 via eth0 with mtu 1400, 203.0.113.15 via eth0 with mtu 9000
// (above the link's), 203.0.113.0/24 via eth0.
func mtuNet(t *testing.T) (*fakeSystem, *fakeLink) {
	t.Helper()
	s := newFakeSystem(false)
	eth := s.net.addLink("eth0", "veth", 1500)
	small := s.net.addLink("eth1", "veth", 1340)
	lo := s.net.addLink("lo", "loopback", 65536)
	for _, a := range []struct {
		l *fakeLink
		p string
	}{{eth, "192.0.2.1/24"}, {small, "198.51.100.1/24"}} {
		if err := s.net.AddrReplace(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: a.l.index}},
			&netlink.Addr{IPNet: ipNet(pfx(a.p))}); err != nil {
			t.Fatal(err)
		}
	}
	// The fake's RouteGet returns the first route that contains the
	// destination: specific routes first.
	for _, r := range []netlink.Route{
		{LinkIndex: lo.index, Dst: ipNet(pfx("192.0.2.1/32")), Type: unix.RTN_LOCAL},
		{LinkIndex: eth.index, Dst: ipNet(pfx("203.0.113.14/32")), MTU: 1400},
		{LinkIndex: eth.index, Dst: ipNet(pfx("203.0.113.15/32")), MTU: 9000},
		{LinkIndex: eth.index, Dst: ipNet(pfx("203.0.113.0/24"))},
	} {
		if err := s.net.RouteAdd(&r); err != nil {
			t.Fatal(err)
		}
	}
	return s, eth
}

func TestUnderlayMTUFake(t *testing.T) {
	s, _ := mtuNet(t)
	for _, c := range []struct {
		addr string
		want int // 0: error
	}{
		{"192.0.2.1", 1500},        // local route via lo: the link holding it, not lo's 65536
		{"::ffff:192.0.2.1", 1500}, // same, mapped
		{"198.51.100.1", 1340},     // no route at all, held by eth1
		{"203.0.113.14", 1400},     // route mtu below the link's
		{"203.0.113.15", 1500},     // route mtu above the link's: the link limits
		{"203.0.113.9", 1500},      // route without mtu: the output link's
		{"2001:db8::1", 0},         // no link, no route
	} {
		got, err := underlayMTU(s.net, netip.MustParseAddr(c.addr))
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
	if _, err := underlayMTU(s.net, netip.Addr{}); err == nil {
		t.Error("invalid address: no error")
	}
}

func TestUnderlayMTULinkError(t *testing.T) {
	s, eth := mtuNet(t)
	boom := errors.New("boom")
	s.net.fail["LinkByIndex"] = boom
	if _, err := underlayMTU(s.net, netip.MustParseAddr("203.0.113.9")); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	delete(s.net.fail, "LinkByIndex")
	s.net.fail["AddrList"] = boom
	if _, err := underlayMTU(s.net, netip.MustParseAddr("192.0.2.1")); !errors.Is(err, boom) {
		t.Fatalf("local address with AddrList failing: err %v, want boom", err)
	}
	// A routed destination needs no address dump.
	if got, err := underlayMTU(s.net, netip.MustParseAddr("203.0.113.14")); err != nil || got != 1400 {
		t.Fatalf("got %d, %v; want 1400 via eth0 (%d)", got, err, eth.index)
	}
}

// multiRoutes answers RouteGet with several routes (multipath).
type multiRoutes struct {
	*fakeNet
	routes []netlink.Route
}

func (m multiRoutes) RouteGet(net.IP) ([]netlink.Route, error) { return m.routes, nil }

func TestUnderlayMTUMultipath(t *testing.T) {
	s, eth := mtuNet(t)
	small := s.net.get("eth1")
	h := multiRoutes{s.net, []netlink.Route{
		{LinkIndex: eth.index, MTU: 1450},
		{LinkIndex: small.index},
		{LinkIndex: 0}, // no output link: ignored
	}}
	if got, err := underlayMTU(h, netip.MustParseAddr("203.0.113.9")); err != nil || got != 1340 {
		t.Fatalf("got %d, %v; want the lowest path, 1340", got, err)
	}
	h.routes = []netlink.Route{{LinkIndex: 0}}
	if _, err := underlayMTU(h, netip.MustParseAddr("203.0.113.9")); err == nil {
		t.Fatal("route without output link: no error")
	}
}

func TestAutoMTUFake(t *testing.T) {
	s, _ := mtuNet(t)
	for _, c := range []struct {
		addr string
		want int // 0: error
	}{
		{"192.0.2.1", 1420},    // held by eth0
		{"203.0.113.9", 1420},  // not held: the route's link
		{"203.0.113.14", 1320}, // the route's mtu
		{"198.51.100.1", 0},    // 1340-80 < 1280
		{"2001:db8::1", 0},     // no link, no route
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

func TestMeshPathAndSetMTU(t *testing.T) {
	s, _ := mtuNet(t)
	m, err := open(testConfig(t), nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.PathMTU(netip.MustParseAddr("203.0.113.14")); err != nil || got != 1400 {
		t.Fatalf("PathMTU = %d, %v; want 1400", got, err)
	}
	if err := m.SetMTU(1320); err != nil {
		t.Fatal(err)
	}
	if l := s.net.get(testDev); l.mtu != 1320 {
		t.Fatalf("link MTU %d after SetMTU(1320)", l.mtu)
	}
	for _, bad := range []int{0, 1279, 65536} {
		if err := m.SetMTU(bad); err == nil {
			t.Errorf("SetMTU(%d): no error", bad)
		}
	}
	if l := s.net.get(testDev); l.mtu != 1320 {
		t.Fatalf("link MTU %d after rejected SetMTU calls", l.mtu)
	}
	s.net.fail["LinkSetMTU"] = errors.New("boom")
	if err := m.SetMTU(1400); err == nil {
		t.Fatal("LinkSetMTU failing: no error")
	}
	delete(s.net.fail, "LinkSetMTU")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PathMTU(netip.MustParseAddr("203.0.113.14")); !errors.Is(err, ErrClosed) {
		t.Fatalf("PathMTU after Close: %v", err)
	}
	if err := m.SetMTU(1400); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetMTU after Close: %v", err)
	}
}

func TestAttachedNoMTU(t *testing.T) {
	s := newFakeSystem(false)
	m, err := Attach(testDev, s.client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.PathMTU(netip.MustParseAddr("192.0.2.1")); !errors.Is(err, ErrNoLink) {
		t.Fatalf("PathMTU on attached: %v", err)
	}
	if err := m.SetMTU(1400); !errors.Is(err, ErrNoLink) {
		t.Fatalf("SetMTU on attached: %v", err)
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
