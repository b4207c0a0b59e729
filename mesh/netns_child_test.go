package mesh

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestNetnsChild is the body of the root tests, run by a re-executed test
// binary inside a namespace (see netns_test.go). Invoked normally it has no
// spec and returns at once.
func TestNetnsChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return // not a child: nothing to do
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	switch spec.Scenario {
	case "pair":
		childPair(t, spec)
	case "single":
		childSingle(t, spec)
	default:
		t.Fatalf("unknown scenario %q", spec.Scenario)
	}
}

func childLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func childConfig(t *testing.T, spec childSpec, mtu int) Config {
	key, err := ParseKey(spec.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Interface: spec.Interface, PrivateKey: key, ListenPort: spec.ListenPort, MTU: mtu,
		Address4: pfx(spec.Address4), Address6: pfx(spec.Address6)}
}

// waitForClose signals readiness to the parent and blocks until it says
// "close" (or its stdin ends).
func waitForClose(t *testing.T) {
	fmt.Println(readyMarker)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "close" {
		t.Logf("parent ended without close (%q); closing anyway", line)
	}
}

func childPair(t *testing.T, spec childSpec) {
	underlay := netip.MustParseAddr(spec.Underlay)
	mtu, err := AutoMTU(underlay)
	if err != nil {
		t.Fatal(err)
	}
	if mtu != spec.UnderlayMTU-80 {
		t.Fatalf("AutoMTU(%s) = %d, want %d", underlay, mtu, spec.UnderlayMTU-80)
	}
	peerUnderlay := netip.MustParseAddrPort(spec.Peer.Endpoint).Addr()
	if viaRoute, err := AutoMTU(peerUnderlay); err != nil || viaRoute != mtu {
		t.Fatalf("AutoMTU(%s) via route = %d, %v", peerUnderlay, viaRoute, err)
	}

	cfg := childConfig(t, spec, mtu)
	m, err := Open(cfg, childLogger())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close()
		}
	})
	checkOpened(t, m, cfg)
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	checkUp(t, cfg)

	peerKey, err := ParseKey(spec.Peer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	desired := []Peer{{PublicKey: peerKey, Endpoint: netip.MustParseAddrPort(spec.Peer.Endpoint),
		AllowedIPs: []netip.Prefix{pfx(spec.Peer.Address4 + "/32"), pfx(spec.Peer.Address6 + "/128")}}}
	if res, err := m.Reconcile(desired); err != nil || res != (ReconcileResult{Added: 1}) {
		t.Fatalf("Reconcile: %+v, %v", res, err)
	}
	if res, err := m.Reconcile(desired); err != nil || res != (ReconcileResult{}) {
		t.Fatalf("second Reconcile changed something: %+v, %v", res, err)
	}

	stop := serveEcho(t, []string{cfg.Address4.Addr().String(), cfg.Address6.Addr().String()})
	for _, target := range []string{spec.Peer.Address4, spec.Peer.Address6} {
		echoOverlay(t, net.JoinHostPort(target, "7000"), 90*time.Second)
	}

	hs := wgShow(t, cfg.Interface, "latest-handshakes")
	fields := strings.Fields(hs)
	if len(fields) != 2 || fields[0] != spec.Peer.PublicKey {
		t.Fatalf("wg show latest-handshakes: %q", hs)
	}
	if ts, _ := strconv.ParseInt(fields[1], 10, 64); ts == 0 {
		t.Fatalf("no handshake with the peer: %q", hs)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].PublicKey != peerKey || st[0].LastHandshake.IsZero() || st[0].RxBytes == 0 ||
		st[0].TxBytes == 0 || st[0].Endpoint != netip.MustParseAddrPort(spec.Peer.Endpoint) {
		t.Fatalf("Stats: %+v", st)
	}
	if res, err := m.Reconcile(desired); err != nil || res != (ReconcileResult{}) {
		t.Fatalf("Reconcile after traffic changed something: %+v, %v", res, err)
	}
	if st2, _ := m.Stats(); len(st2) != 1 || st2[0].LastHandshake != st[0].LastHandshake {
		t.Fatalf("unchanged Reconcile disturbed the session: %+v then %+v", st, st2)
	}
	checkNoLinkLocal(t, cfg.Interface)

	waitForClose(t)
	stop()
	checkGoroutinesVisible(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	checkClosed(t, m, cfg.Interface)
}

func childSingle(t *testing.T, spec childSpec) {
	cfg := childConfig(t, spec, 1420)
	name := cfg.Interface

	// A stale interface of that name (here a persistent TUN) is replaced...
	run(t, "ip", "tuntap", "add", "mode", "tun", "name", name)
	// ...and a failing Open (listen port taken) leaves nothing behind.
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{Port: cfg.ListenPort})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := Open(cfg, childLogger()); err == nil {
		m.Close()
		t.Fatal("Open succeeded with its listen port taken")
	} else {
		t.Logf("Open with a taken port failed as expected: %v", err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatal("failed Open left an interface")
	}
	if _, err := os.Stat(uapiSocketPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed Open left the UAPI socket: %v", err)
	}
	taken.Close()

	run(t, "ip", "tuntap", "add", "mode", "tun", "name", name)
	stale, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(cfg, childLogger())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close()
		}
	})
	if l, err := netlink.LinkByName(name); err != nil || l.Attrs().Index == stale.Attrs().Index {
		t.Fatalf("stale interface kept (index %d): %v", stale.Attrs().Index, err)
	}
	checkOpened(t, m, cfg)
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	checkUp(t, cfg)

	// Renumbering.
	if err := m.SetAddress4(pfx("100.80.7.7/16")); err != nil {
		t.Fatal(err)
	}
	addrs := run(t, "ip", "-4", "addr", "show", "dev", name)
	if !strings.Contains(addrs, "100.80.7.7/16") || strings.Contains(addrs, cfg.Address4.String()) {
		t.Fatalf("after SetAddress4:\n%s", addrs)
	}
	cfg.Address4 = pfx("100.80.7.7/16")
	checkUp(t, cfg)

	// Peers by diff against the real device (the endpoint is unroutable
	// here, so nothing leaves the namespace).
	k1 := testKey(t).PublicKey()
	ep := netip.MustParseAddrPort("192.0.2.99:51820")
	p := Peer{PublicKey: k1, Keepalive: Keepalive, Endpoint: ep, AllowedIPs: []netip.Prefix{pfx("100.80.0.9/32"), pfx("fd5e:6d00::9/128")}}
	if res, err := m.Reconcile([]Peer{p}); err != nil || res != (ReconcileResult{Added: 1}) {
		t.Fatalf("Reconcile: %+v, %v", res, err)
	}
	dump := wgShow(t, name, "dump")
	if !strings.Contains(dump, k1.String()+"\t(none)\t192.0.2.99:51820\t100.80.0.9/32,fd5e:6d00::9/128\t0\t0\t0\t25") {
		t.Fatalf("wg show dump:\n%s", dump)
	}
	p.AllowedIPs = []netip.Prefix{pfx("100.80.0.10/32"), pfx("fd5e:6d00::9/128")}
	if res, err := m.Reconcile([]Peer{p}); err != nil || res != (ReconcileResult{Updated: 1}) {
		t.Fatalf("Reconcile: %+v, %v", res, err)
	}
	if ips := wgShow(t, name, "allowed-ips"); !strings.Contains(ips, "100.80.0.10/32 fd5e:6d00::9/128") {
		t.Fatalf("allowed IPs not updated: %q", ips)
	}
	if res, err := m.Reconcile(nil); err != nil || res != (ReconcileResult{Removed: 1}) {
		t.Fatalf("Reconcile: %+v, %v", res, err)
	}
	if peers := wgShow(t, name, "peers"); strings.TrimSpace(peers) != "" {
		t.Fatalf("peer not removed: %q", peers)
	}

	waitForClose(t)
	checkGoroutinesVisible(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	checkClosed(t, m, name)
}

// checkOpened verifies the state Open must leave: link down, no IPv6
// autoconfiguration, MTU, addresses, key and port.
func checkOpened(t *testing.T, m *Mesh, cfg Config) {
	t.Helper()
	name := cfg.Interface
	want := BackendUserspace
	if KernelSupported() {
		want = BackendKernel
	}
	if m.Backend() != want || m.Name() != name {
		t.Fatalf("backend %q (want %q), name %q", m.Backend(), want, m.Name())
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		t.Fatal("link is up after Open")
	}
	if l.Attrs().MTU != cfg.MTU {
		t.Fatalf("MTU %d, want %d", l.Attrs().MTU, cfg.MTU)
	}
	if d := run(t, "ip", "-d", "link", "show", "dev", name); !strings.Contains(d, "addrgenmode none") {
		t.Fatalf("addr_gen_mode is not none:\n%s", d)
	}
	addrs := run(t, "ip", "addr", "show", "dev", name)
	for _, p := range []netip.Prefix{cfg.Address4, cfg.Address6} {
		if !strings.Contains(addrs, p.String()) {
			t.Fatalf("address %s missing:\n%s", p, addrs)
		}
	}
	if m.Backend() == BackendUserspace {
		if _, err := os.Stat(uapiSocketPath(name)); err != nil {
			t.Fatalf("UAPI socket: %v", err)
		}
	}
	if pub := strings.TrimSpace(wgShow(t, name, "public-key")); pub != cfg.PrivateKey.PublicKey().String() {
		t.Fatalf("wg show public-key = %q", pub)
	}
	if port := strings.TrimSpace(wgShow(t, name, "listen-port")); port != strconv.Itoa(cfg.ListenPort) {
		t.Fatalf("wg show listen-port = %q", port)
	}
}

// checkUp verifies the link is up with routes for both overlay prefixes.
func checkUp(t *testing.T, cfg Config) {
	t.Helper()
	l, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("link is not up after Up")
	}
	for _, p := range []netip.Prefix{cfg.Address4, cfg.Address6} {
		family := netlink.FAMILY_V4
		if p.Addr().Is6() {
			family = netlink.FAMILY_V6
		}
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p.Masked())},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
		if err != nil || len(rs) == 0 {
			t.Fatalf("no route for %s via %s: %v", p.Masked(), cfg.Interface, err)
		}
	}
}

func checkNoLinkLocal(t *testing.T, name string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			t.Fatalf("IPv6 autoconfiguration produced %s on %s", a.IP, name)
		}
	}
}

// checkGoroutinesVisible makes sure the leak check in checkClosed can see
// wireguard-go's goroutines at all.
func checkGoroutinesVisible(t *testing.T, m *Mesh) {
	t.Helper()
	if m.Backend() == BackendUserspace && len(wireguardGoroutines()) == 0 {
		t.Fatal("no wireguard-go goroutines visible while the device runs: the leak check is blind")
	}
}

// checkClosed verifies Close removed the interface, the UAPI socket and
// every wireguard-go goroutine, and is idempotent.
func checkClosed(t *testing.T, m *Mesh, name string) {
	t.Helper()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatal("interface still exists after Close")
	}
	if _, err := os.Stat(uapiSocketPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("UAPI socket after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := wireguardGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d wireguard goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wireguardGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "golang.zx2c4.com/wireguard") || strings.Contains(g, "mesh.(*userspace)") {
			out = append(out, g)
		}
	}
	return out
}

func wgShow(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "wg", append([]string{"show"}, args...)...)
}

// serveEcho echoes one line per connection on port 7000 of addrs; the
// returned func stops it.
func serveEcho(t *testing.T, addrs []string) func() {
	t.Helper()
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(a, "7000"))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					if err == nil {
						c.Write([]byte("echo " + line))
					}
				}()
			}
		}()
	}
	return func() {
		for _, l := range ls {
			l.Close()
		}
	}
}

// echoOverlay dials target over the overlay until an echo comes back.
func echoOverlay(t *testing.T, target string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = echoOnce(target)
		if last == nil {
			t.Logf("echo over the overlay to %s works", target)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no echo from %s over the overlay within %v: %v", target, timeout, last)
}

func echoOnce(target string) error {
	c, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "echo hello\n" {
		return fmt.Errorf("got %q", got)
	}
	return nil
}
