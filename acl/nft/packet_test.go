package nft

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// meshPair is two namespaces joined by a veth standing in for the mesh
// interface: "client" (100.80.0.1, fd5e:6d00::1 on vA) and "server"
// (100.80.0.2, fd5e:6d00::2 on smesh0, the Config.Interface, with the
// Firewall), plus an "underlay" veth pair (192.0.2.1 / 192.0.2.2). The server
// also owns 10.99.0.1 (on lo), an address that is not an overlay address.
// It runs TCP echo servers on ports 8080 and 9090 of every server address.
type meshPair struct {
	t              *testing.T
	client, server *testNS
	fw             *Firewall
}

var (
	cli4 = netip.MustParseAddr("100.80.0.1")
	cli6 = netip.MustParseAddr("fd5e:6d00::1")
	srv4 = netip.MustParseAddr("100.80.0.2")
	srv6 = netip.MustParseAddr("fd5e:6d00::2")
)

func newMeshPair(t *testing.T) *meshPair { return newMeshPairWith(t, nil) }

// newMeshPairWith is newMeshPair with setup, when not nil, putting the
// server's table in place instead of Install (before the links come up).
func newMeshPairWith(t *testing.T, setup func(server *testNS)) *meshPair {
	requireRoot(t)
	p := &meshPair{t: t, client: newTestNS(t), server: newTestNS(t)}
	c, s := p.client, p.server
	c.Run("ip", "link", "add", "vA", "address", "02:00:00:00:00:01", "type", "veth",
		"peer", "name", "smesh0", "address", "02:00:00:00:00:02", "netns", s.Name)
	c.Run("ip", "link", "add", "ulA", "type", "veth", "peer", "name", "ulB", "netns", s.Name)
	c.Run("ip", "addr", "add", "100.80.0.1/16", "dev", "vA")
	c.Run("ip", "addr", "add", "fd5e:6d00::1/48", "dev", "vA", "nodad")
	c.Run("ip", "addr", "add", "192.0.2.1/24", "dev", "ulA")
	s.Run("ip", "addr", "add", "100.80.0.2/16", "dev", "smesh0")
	s.Run("ip", "addr", "add", "fd5e:6d00::2/48", "dev", "smesh0", "nodad")
	s.Run("ip", "addr", "add", "192.0.2.2/24", "dev", "ulB")
	s.Run("ip", "addr", "add", "10.99.0.1/32", "dev", "lo")

	// Filtered from the first packet: the table goes in before the links
	// come up.
	if setup != nil {
		setup(s)
	} else {
		p.fw = s.firewall(testConfig())
		if err := p.fw.Install(); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct {
		ns  *testNS
		dev string
	}{{c, "vA"}, {c, "ulA"}, {s, "smesh0"}, {s, "ulB"}} {
		l.ns.Run("ip", "link", "set", l.dev, "up")
	}
	c.Run("ip", "route", "add", "10.99.0.1/32", "via", "100.80.0.2")
	// The mesh interface is a TUN (layer 3, no neighbour discovery); on this
	// veth stand-in, static neighbours replace the ICMPv6 neighbour
	// discovery that the firewall rightly drops (not addressed to us).
	c.Run("ip", "-6", "neigh", "replace", "fd5e:6d00::2", "lladdr", "02:00:00:00:00:02", "dev", "vA", "nud", "permanent")
	s.Run("ip", "-6", "neigh", "replace", "fd5e:6d00::1", "lladdr", "02:00:00:00:00:01", "dev", "smesh0", "nud", "permanent")
	p.echoServers(p.server, 8080, 9090)
	p.echoServers(p.client, 7070)
	return p
}

// echoServers listens on the ports (all addresses of ns) and echoes.
func (p *meshPair) echoServers(ns *testNS, ports ...int) {
	var wg sync.WaitGroup
	var lns []net.Listener
	var mu sync.Mutex
	var conns []net.Conn
	for _, port := range ports {
		var ln net.Listener
		var err error
		ns.Do(func() error { ln, err = net.ListenTCP("tcp", &net.TCPAddr{Port: port}); return nil })
		if err != nil {
			p.t.Fatal(err)
		}
		lns = append(lns, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				wg.Add(1)
				go func() { defer wg.Done(); _, _ = io.Copy(c, c) }()
			}
		}()
	}
	p.t.Cleanup(func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// dial connects from the client namespace.
func (p *meshPair) dial(addr netip.Addr, port uint16, timeout time.Duration) (net.Conn, error) {
	return dialFrom(p.t, p.client, addr, port, timeout)
}

func dialFrom(t *testing.T, ns *testNS, addr netip.Addr, port uint16, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	ns.Do(func() error {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, port).String(), timeout)
		return nil
	})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// echo sends a line on c and waits for it to come back.
func echo(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

const denyWait = 800 * time.Millisecond

func (p *meshPair) mustConnect(addr netip.Addr, port uint16) net.Conn {
	p.t.Helper()
	c, err := p.dial(addr, port, 5*time.Second)
	if err != nil {
		p.t.Fatalf("connect %v:%d: %v", addr, port, err)
	}
	if err := echo(c, 5*time.Second); err != nil {
		p.t.Fatalf("echo over %v:%d: %v", addr, port, err)
	}
	return c
}

// mustTimeOut checks that a connection attempt gets no answer at all (a drop,
// not a refusal).
func (p *meshPair) mustTimeOut(addr netip.Addr, port uint16) {
	p.t.Helper()
	_, err := p.dial(addr, port, denyWait)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		p.t.Fatalf("connect %v:%d: %v, want a timeout", addr, port, err)
	}
}

func (p *meshPair) apply(e acl.Enforced) {
	p.t.Helper()
	if err := p.fw.Apply(e); err != nil {
		p.t.Fatal(err)
	}
}

func (p *meshPair) denied() uint64 {
	p.t.Helper()
	n, _, err := p.fw.Counters()
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

var srvLocal = []netip.Addr{srv4, srv6}

// enf builds an Enforced: ids, then the sources of each identity.
func enf(ids []acl.Identity, srcs ...acl.Source) acl.Enforced {
	slices.SortFunc(srcs, func(a, b acl.Source) int { return a.Addr.Compare(b.Addr) })
	return acl.Enforced{Local: srvLocal, Identities: ids, Sources: srcs}
}

func tcpID(id uint32, rs ...acl.PortRange) acl.Identity { return acl.Identity{ID: id, TCP: rs} }
func pr(lo, hi uint16) acl.PortRange                    { return acl.PortRange{Lo: lo, Hi: hi} }
func src(a netip.Addr, id uint32) acl.Source            { return acl.Source{Addr: a, ID: id} }

func TestRootPacketsPortsAndOnlyToMe(t *testing.T) {
	p := newMeshPair(t)
	// Fail closed: nothing is allowed before the first Apply.
	p.mustTimeOut(srv4, 8080)

	base := enf([]acl.Identity{tcpID(1, pr(8080, 8080))}, src(cli4, 1), src(cli6, 1))
	p.apply(base)
	p.mustConnect(srv4, 8080)
	p.mustConnect(srv6, 8080)
	before := p.denied()
	p.mustTimeOut(srv4, 9090)
	p.mustTimeOut(srv6, 9090)
	if after := p.denied(); after <= before {
		t.Errorf("final counter %d -> %d: denied packets not counted", before, after)
	}

	// Replies to what the server opens (its egress allows it) pass
	// without any element.
	p.applyEgress(nodeEgress(false, acl.Grant{Dest: 1, Any: true}))
	for _, a := range []netip.Addr{cli4, cli6} {
		c, err := dialFrom(t, p.server, a, 7070, 5*time.Second)
		if err != nil {
			t.Fatalf("server -> client %v: %v", a, err)
		}
		if err := echo(c, 5*time.Second); err != nil {
			t.Fatalf("server -> client %v echo: %v", a, err)
		}
	}

	// Only to me: 10.99.0.1 is the server's, but not an overlay address.
	other := netip.MustParseAddr("10.99.0.1")
	p.mustTimeOut(other, 8080)

	// Underlay guard: the overlay address routed over another interface
	// (the underlay itself works: 192.0.2.2 answers).
	p.mustConnect(netip.MustParseAddr("192.0.2.2"), 8080)
	p.client.Run("ip", "route", "add", "100.80.0.2/32", "via", "192.0.2.2", "dev", "ulA")
	p.mustTimeOut(srv4, 8080)
	if err := p.fw.Remove(); err != nil { // control: without the table it passes
		t.Fatal(err)
	}
	p.mustConnect(srv4, 8080)
	p.mustConnect(other, 8080)
	p.client.Run("ip", "route", "del", "100.80.0.2/32")
	if err := p.fw.Install(); err != nil {
		t.Fatal(err)
	}
	p.apply(base)
	p.mustConnect(srv4, 8080)

	// Port ranges (interval set of the identity), next to a single port
	// (hash set).
	p.apply(enf([]acl.Identity{tcpID(1, pr(9000, 9100))}, src(cli4, 1)))
	p.mustConnect(srv4, 9090)
	p.mustTimeOut(srv4, 8080)
	p.apply(enf([]acl.Identity{tcpID(1, pr(8080, 8080), pr(9000, 9100)), tcpID(2, pr(9085, 9095))}, src(cli4, 1), src(cli6, 2)))
	p.mustConnect(srv4, 8080)
	p.mustConnect(srv4, 9090)
	p.mustConnect(srv6, 9090)
	p.mustTimeOut(srv6, 8080)
	// Other identities' ports do not open to the client.
	o4, o6 := netip.MustParseAddr("100.80.0.5"), netip.MustParseAddr("fd5e:6d00::5")
	p.apply(enf([]acl.Identity{tcpID(1, pr(8000, 8100)), tcpID(3, pr(9000, 9100), pr(7000, 7000))},
		src(cli4, 1), src(cli6, 1), src(o4, 3), src(o6, 3)))
	p.mustConnect(srv4, 8080)
	p.mustConnect(srv6, 8080)
	p.mustTimeOut(srv4, 9090)
	p.mustTimeOut(srv6, 9090)

	// "any" and ICMP.
	p.apply(enf([]acl.Identity{{ID: 4, Any: true}}, src(cli6, 4)))
	p.mustConnect(srv6, 9090)
	p.mustTimeOut(srv4, 9090)
	if _, err := p.client.Try("ping", "-c", "1", "-W", "1", "100.80.0.2"); err == nil {
		t.Error("ping passed without icmp")
	}
	p.apply(enf([]acl.Identity{{ID: 4, ICMP: true}}, src(cli4, 4), src(cli6, 4)))
	p.client.Run("ping", "-c", "1", "-W", "2", "100.80.0.2")
	p.client.Run("ping", "-6", "-c", "1", "-W", "2", "fd5e:6d00::2")
	p.mustTimeOut(srv4, 9090)
}

func TestRootPacketsRevocationAuditAndConntrack(t *testing.T) {
	p := newMeshPair(t)
	ids := []acl.Identity{tcpID(1, pr(8080, 8080), pr(9000, 9100))}
	p.apply(enf(ids, src(cli4, 1), src(cli6, 1)))
	c4 := p.mustConnect(srv4, 8080)
	c6 := p.mustConnect(srv6, 8080)
	c9 := p.mustConnect(srv4, 9090)

	// Removing the map element stops the established flows at once.
	p.apply(enf(ids, src(cli6, 1)))
	if err := echo(c4, denyWait); err == nil {
		t.Fatal("established connection still passes data after its source was removed")
	}
	if err := echo(c9, denyWait); err == nil {
		t.Fatal("established range connection still passes data after its source was removed")
	}
	if err := echo(c6, 5*time.Second); err != nil {
		t.Fatalf("the other flow stopped too: %v", err)
	}
	// A policy change (the identity's ports) cuts the flows it no longer
	// allows.
	p.apply(enf([]acl.Identity{tcpID(1, pr(9090, 9090))}, src(cli6, 1)))
	if err := echo(c6, denyWait); err == nil {
		t.Fatal("established connection still passes data after its port was removed")
	}

	// Audit mode: the denied connection goes through and is counted.
	before := p.denied()
	e := enf(nil)
	e.Audit = true
	p.apply(e)
	p.mustConnect(srv4, 9090)
	if after := p.denied(); after <= before {
		t.Errorf("audit counter %d -> %d", before, after)
	}
	p.mustTimeOut(netip.MustParseAddr("10.99.0.1"), 8080) // only-to-me holds in audit mode
	p.apply(enf(nil))
	p.mustTimeOut(srv4, 9090)

	// DeleteConntrack removes the entries of one address, and only those.
	h, err := netlink.NewHandleAt(p.server.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	count := func(a netip.Addr) int {
		t.Helper()
		n := 0
		for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
			flows, err := h.ConntrackTableList(netlink.ConntrackTable, fam)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range flows {
				if src, _ := netip.AddrFromSlice(f.Forward.SrcIP); src.Unmap() == a {
					n++
				}
			}
		}
		return n
	}
	if count(cli4) == 0 || count(cli6) == 0 {
		t.Fatalf("no conntrack entries to delete: %d %d", count(cli4), count(cli6))
	}
	var n int
	p.server.Do(func() error { n, err = DeleteConntrack([]netip.Addr{cli4}); return nil })
	if err != nil || n == 0 {
		t.Fatalf("DeleteConntrack = %d, %v", n, err)
	}
	if left := count(cli4); left != 0 {
		t.Errorf("%d entries of %v left", left, cli4)
	}
	if count(cli6) == 0 {
		t.Errorf("entries of %v were deleted too", cli6)
	}
}
