package mesh

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/mesh/meshtest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func testConfig(t *testing.T) Config {
	return Config{
		Interface:  testDev,
		PrivateKey: testKey(t),
		ListenPort: 51820,
		MTU:        1420,
		Address4:   pfx("100.80.3.7/16"),
		Address6:   pfx("fd5e:6d00::7/48"),
	}
}

func newFakeSystem(kernelWG bool) *fakeSystem {
	wg := meshtest.NewWireGuard()
	wg.AddDevice(testDev, Key{}, 0)
	return &fakeSystem{net: newFakeNet(kernelWG), client: wg, fakeWG: wg}
}

func (s *fakeSystem) wg() *meshtest.WireGuard { return s.fakeWG }

// portLiar reports another listen port than configured, as wireguard-go
// does when its asynchronous bind failed and it fell back to a random port.
type portLiar struct{ *meshtest.WireGuard }

func (p portLiar) Device(name string) (*wgtypes.Device, error) {
	d, err := p.WireGuard.Device(name)
	if err == nil {
		d.ListenPort = 40001
	}
	return d, err
}

func addrStrings(l *fakeLink) []string {
	var out []string
	for _, a := range l.addrs {
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

func TestOpenKernel(t *testing.T) {
	s := newFakeSystem(true)
	cfg := testConfig(t)
	m, err := open(cfg, nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	if m.Backend() != BackendKernel || m.Name() != testDev {
		t.Fatalf("backend %q name %q", m.Backend(), m.Name())
	}
	l := s.net.get(testDev)
	if l == nil || l.kind != "wireguard" {
		t.Fatalf("link %+v", l)
	}
	if l.up {
		t.Fatal("link is up after Open; the caller brings it up after the firewall")
	}
	if l.mtu != 1420 || l.genMode != nl.IN6_ADDR_GEN_MODE_NONE {
		t.Fatalf("mtu %d addr_gen_mode %d", l.mtu, l.genMode)
	}
	if got := addrStrings(l); !slices.Equal(got, []string{"100.80.3.7/16", "fd5e:6d00::7/48"}) {
		t.Fatalf("addresses %v", got)
	}
	for _, a := range l.addrs {
		if a.IP.To4() == nil && a.Flags&unix.IFA_F_NODAD == 0 {
			t.Fatal("IPv6 overlay address without NODAD")
		}
	}
	calls := s.wg().Calls()
	if len(calls) != 1 || *calls[0].Config.PrivateKey != cfg.PrivateKey || *calls[0].Config.ListenPort != 51820 ||
		calls[0].Config.ReplacePeers || len(calls[0].Config.Peers) != 0 {
		t.Fatalf("wgctrl calls %+v", calls)
	}
	// addr_gen_mode comes before any address.
	log := s.net.callLog()
	gen := slices.IndexFunc(log, func(c string) bool { return strings.HasPrefix(c, "LinkSetIP6AddrGenMode") })
	addr := slices.IndexFunc(log, func(c string) bool { return strings.HasPrefix(c, "AddrReplace") })
	if gen < 0 || addr < gen {
		t.Fatalf("call order %v", log)
	}
	if slices.ContainsFunc(log, func(c string) bool { return strings.HasPrefix(c, "LinkSetUp") }) {
		t.Fatalf("Open set the link up: %v", log)
	}

	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	if !s.net.get(testDev).up {
		t.Fatal("link not up after Up")
	}
	var dsts []string
	for _, r := range s.net.routeList() {
		if r.LinkIndex != l.index {
			t.Fatalf("route via wrong link: %+v", r)
		}
		dsts = append(dsts, r.Dst.String())
	}
	slices.Sort(dsts)
	if !slices.Equal(dsts, []string{"100.80.0.0/16", "fd5e:6d00::/48"}) {
		t.Fatalf("routes %v", dsts)
	}
	if err := m.Up(); err != nil || len(s.net.routeList()) != 2 {
		t.Fatalf("second Up: %v, routes %v", err, s.net.routeList())
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if s.net.get(testDev) != nil || !s.wg().Closed() {
		t.Fatal("Close left the link or the client")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := m.Up(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Up after Close: %v", err)
	}
}

func TestOpenUpKeepsExistingRoutes(t *testing.T) {
	s := newFakeSystem(true)
	m, err := open(testConfig(t), nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	idx := s.net.get(testDev).index
	// The kernel's own prefix route is already there.
	if err := s.net.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(pfx("100.80.0.0/16"))}); err != nil {
		t.Fatal(err)
	}
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.net.routeList()); n != 2 {
		t.Fatalf("%d routes, want the existing v4 one plus a v6 one", n)
	}
}

func TestOpenUserspaceFallback(t *testing.T) {
	s := newFakeSystem(false)
	m, err := open(testConfig(t), nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	if m.Backend() != BackendUserspace {
		t.Fatalf("backend %q", m.Backend())
	}
	if s.user == nil || !s.user.up {
		t.Fatal("wireguard-go device not started and bound")
	}
	l := s.net.get(testDev)
	if l == nil || l.kind != "tuntap" || l.up || l.genMode != nl.IN6_ADDR_GEN_MODE_NONE || l.mtu != 1420 {
		t.Fatalf("link %+v", l)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if s.user.closed != 1 || s.net.get(testDev) != nil {
		t.Fatalf("Close: device closed %d times, link %+v", s.user.closed, s.net.get(testDev))
	}
}

func TestOpenReplacesStaleInterface(t *testing.T) {
	s := newFakeSystem(true)
	stale := s.net.addLink(testDev, "dummy", 1500)
	m, err := open(testConfig(t), nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l := s.net.get(testDev)
	if l.index == stale.index || l.kind != "wireguard" {
		t.Fatalf("stale interface kept: %+v", l)
	}
}

func TestOpenRefusesLiveUAPISocket(t *testing.T) {
	s := newFakeSystem(true)
	s.inUse = true
	other := s.net.addLink(testDev, "tuntap", 1500)
	if _, err := open(testConfig(t), nil, s.system()); err == nil {
		t.Fatal("Open succeeded while another process serves the interface")
	}
	if l := s.net.get(testDev); l == nil || l.index != other.index {
		t.Fatal("Open removed another process's interface")
	}
}

// TestOpenCleansUpOnFailure fails each step of Open in turn and checks that
// nothing is left behind.
func TestOpenCleansUpOnFailure(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		kernelWG bool
		inject   func(*fakeSystem)
	}{
		{"kernel link add", true, func(s *fakeSystem) { s.net.fail["LinkAdd"] = unix.EPERM }},
		{"userspace start", false, func(s *fakeSystem) { s.userErr = boom }},
		{"addr_gen_mode", true, func(s *fakeSystem) { s.net.fail["LinkSetIP6AddrGenMode"] = boom }},
		{"addr_gen_mode userspace", false, func(s *fakeSystem) { s.net.fail["LinkSetIP6AddrGenMode"] = boom }},
		{"mtu", true, func(s *fakeSystem) { s.net.fail["LinkSetMTU"] = boom }},
		{"wgctrl client", true, func(s *fakeSystem) { s.clientErr = boom }},
		{"configure key", false, func(s *fakeSystem) { s.wg().FailConfigure(boom) }},
		{"listen port taken", false, func(s *fakeSystem) { s.userUpErr = unix.EADDRINUSE }},
		{"listen port not applied", false, func(s *fakeSystem) { s.client = portLiar{s.fakeWG} }},
		{"address", true, func(s *fakeSystem) { s.net.fail["AddrReplace"] = boom }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newFakeSystem(c.kernelWG)
			c.inject(s)
			m, err := open(testConfig(t), nil, s.system())
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if l := s.net.get(testDev); l != nil {
				t.Fatalf("interface left behind: %+v", l)
			}
			if s.clients > 0 && !s.wg().Closed() {
				t.Fatal("wgctrl client left open")
			}
			if s.user != nil && s.user.closed != 1 {
				t.Fatalf("wireguard-go device closed %d times", s.user.closed)
			}
		})
	}
}

func TestOpenValidatesConfig(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"empty name":     func(c *Config) { c.Interface = "" },
		"long name":      func(c *Config) { c.Interface = "segmesh-too-long0" },
		"template name":  func(c *Config) { c.Interface = "smt%d" },
		"slash":          func(c *Config) { c.Interface = "a/b" },
		"no key":         func(c *Config) { c.PrivateKey = Key{} },
		"port":           func(c *Config) { c.ListenPort = 70000 },
		"small mtu":      func(c *Config) { c.MTU = 1200 },
		"v6 as address4": func(c *Config) { c.Address4 = pfx("fd5e::1/64") },
		"v4 as address6": func(c *Config) { c.Address6 = pfx("100.80.0.1/16") },
		"no address6":    func(c *Config) { c.Address6 = netip.Prefix{} },
	} {
		t.Run(name, func(t *testing.T) {
			s := newFakeSystem(true)
			cfg := testConfig(t)
			mut(&cfg)
			if _, err := open(cfg, nil, s.system()); err == nil {
				t.Fatal("accepted")
			}
			if len(s.net.callLog()) != 0 {
				t.Fatalf("touched the system: %v", s.net.callLog())
			}
		})
	}
}

func TestSetAddress4(t *testing.T) {
	s := newFakeSystem(true)
	m, err := open(testConfig(t), nil, s.system())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	if err := m.SetAddress4(pfx("100.80.9.9/16")); err != nil {
		t.Fatal(err)
	}
	if got := addrStrings(s.net.get(testDev)); !slices.Equal(got, []string{"100.80.9.9/16", "fd5e:6d00::7/48"}) {
		t.Fatalf("addresses %v", got)
	}
	n := len(s.net.callLog())
	if err := m.SetAddress4(pfx("100.80.9.9/16")); err != nil || len(s.net.callLog()) != n {
		t.Fatalf("same address: %v, calls %v", err, s.net.callLog()[n:])
	}
	if err := m.SetAddress4(pfx("fd5e::1/64")); err == nil {
		t.Fatal("accepted an IPv6 prefix")
	}
	// Adding fails: the old address is restored.
	s.net.mu.Lock()
	s.net.fail["AddrReplace 100.80.1.1/16"] = errors.New("boom")
	s.net.mu.Unlock()
	if err := m.SetAddress4(pfx("100.80.1.1/16")); err == nil {
		t.Fatal("no error")
	}
	if got := addrStrings(s.net.get(testDev)); !slices.Equal(got, []string{"100.80.9.9/16", "fd5e:6d00::7/48"}) {
		t.Fatalf("old address not restored: %v", got)
	}
	s.net.mu.Lock()
	delete(s.net.fail, "AddrReplace 100.80.1.1/16")
	s.net.mu.Unlock()
	if err := m.SetAddress4(pfx("100.80.1.1/16")); err != nil {
		t.Fatal(err)
	}
	if got := addrStrings(s.net.get(testDev)); !slices.Equal(got, []string{"100.80.1.1/16", "fd5e:6d00::7/48"}) {
		t.Fatalf("addresses %v", got)
	}
}

func TestKernelProbe(t *testing.T) {
	if s := newFakeSystem(false); kernelProbe(s.net) {
		t.Fatal("probe true without kernel support")
	}
	s := newFakeSystem(true)
	if !kernelProbe(s.net) {
		t.Fatal("probe false with kernel support")
	}
	if len(s.net.links) != 0 {
		t.Fatal("probe interface left behind")
	}
}
