package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/test/harness"
)

// debianWireguardGo is the wireguard-go of Debian's wireguard-go package,
// which .ci/run installs.
const debianWireguardGo = "/usr/bin/wireguard-go"

// Ports of the interop test: the plain peer may reach the segmesh node on
// interopAllowed (and by ICMP) but not on interopDenied; the segmesh node
// reaches the plain peer's echo server on interopPlainPort.
const (
	interopAllowed   = 8080
	interopDenied    = 9090
	interopPlainPort = 5432
	// interopUpTimeout bounds the wait until the segmesh node shows the
	// plain peer up (gossip join plus WireGuard configuration).
	interopUpTimeout = 20 * time.Second
)

// interopPolicy admits the plain peer's segment into the app node on
// tcp/8080 and ICMP, and lets the app node reach the plain peer.
var interopPolicy = fmt.Sprintf(`mode: enforce
segments:
  app: {role: app}
  plain: {role: plain}
rules:
  - name: plain-to-app
    from: [plain]
    to: [app]
    ports: [tcp/%d, icmp]
  - name: app-to-plain
    from: [app]
    to: [plain]
    ports: [any]
`, interopAllowed)

// requireWireguardGo returns when Debian's wireguard-go is installed; else
// it fails under CI=true and skips otherwise.
func requireWireguardGo(t *testing.T) {
	t.Helper()
	_, err := os.Stat(debianWireguardGo)
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("interop test needs Debian's wireguard-go and CI=true: %v (apt-get install wireguard-go)", err)
	}
	t.Skipf("skipping interop test: %v (apt-get install wireguard-go; set CI=true to make this a failure)", err)
}

// plainPeer is a namespace on the cluster's underlay running Debian's
// wireguard-go configured with wg and ip, announced to the mesh by the
// forger with a genuine record for its key.
type plainPeer struct {
	node    *harness.Node // bare node: namespace, underlay address, interface name
	keyFile string
	pub     string
	addr4   netip.Addr // overlay addresses its key yields
	addr6   netip.Addr
}

// newPlainPeer creates the bare node and a WireGuard key whose first IPv4
// candidate is not taken by any of the given addresses.
func newPlainPeer(t *testing.T, tc *harness.TestCluster, taken ...string) *plainPeer {
	t.Helper()
	n := tc.AddNode(harness.NodeSpec{Name: "plain", Bare: true})
	var priv wgtypes.Key
	for {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		a4 := mesh.Candidate4(overlay4, k.PublicKey(), 0).String()
		if !strings.Contains(","+strings.Join(taken, ",")+",", ","+a4+",") {
			priv = k
			break
		}
	}
	p := &plainPeer{
		node:    n,
		keyFile: filepath.Join(n.Dir, "wg.key"),
		pub:     priv.PublicKey().String(),
		addr4:   mesh.Candidate4(overlay4, priv.PublicKey(), 0),
		addr6:   mesh.Address6(overlay6, priv.PublicKey()),
	}
	if err := os.WriteFile(p.keyFile, []byte(priv.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startWireguardGo runs Debian's wireguard-go in the foreground in the
// plain peer's namespace and waits for its UAPI socket. The socket file is
// removed by the cluster's cleanup if wireguard-go leaves it behind.
func (p *plainPeer) startWireguardGo(t *testing.T, tc *harness.TestCluster) *harness.Proc {
	t.Helper()
	proc := tc.Spawn(p.node.Namespace, "wireguard-go", "env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=verbose",
		debianWireguardGo, "-f", p.node.Interface)
	sock := filepath.Join(harness.WireGuardSocketDir, p.node.Interface+".sock")
	tc.WaitFor("wireguard-go opens its UAPI socket "+sock, 10*time.Second, func() error {
		if err := proc.ExitError(); err != nil {
			return harness.Abort(fmt.Errorf("%w; output:\n%s", err, proc.Output()))
		}
		_, err := os.Stat(sock)
		return err
	})
	return proc
}

// configure sets the plain peer up with wg and ip: its key and port, the
// segmesh node as its only peer, its overlay addresses and routes to the
// segmesh node's overlay addresses.
func (p *plainPeer) configure(t *testing.T, peerPub string, peerEndpoint netip.AddrPort, peer4, peer6 netip.Addr) {
	t.Helper()
	ifname := p.node.Interface
	steps := [][]string{
		{"wg", "set", ifname, "private-key", p.keyFile, "listen-port", fmt.Sprint(wireGuardPort),
			"peer", peerPub, "endpoint", peerEndpoint.String(),
			"allowed-ips", netip.PrefixFrom(peer4, 32).String() + "," + netip.PrefixFrom(peer6, 128).String()},
		{"ip", "link", "set", ifname, "mtu", "1420", "up"},
		{"ip", "addr", "add", netip.PrefixFrom(p.addr4, 32).String(), "dev", ifname},
		{"ip", "-6", "addr", "add", netip.PrefixFrom(p.addr6, 128).String(), "dev", ifname, "nodad"},
		{"ip", "route", "add", netip.PrefixFrom(peer4, 32).String(), "dev", ifname},
		{"ip", "-6", "route", "add", netip.PrefixFrom(peer6, 128).String(), "dev", ifname},
	}
	for _, s := range steps {
		if _, err := p.node.Exec(s...); err != nil {
			t.Fatalf("configure plain wireguard-go: %v", err)
		}
	}
}

// serverSaw reports whether the probe server's output has a TCP connection
// to local port port from remote address from.
func serverSaw(out string, port int, from netip.Addr) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "tcp" {
			continue
		}
		local, err1 := netip.ParseAddrPort(f[1])
		remote, err2 := netip.ParseAddrPort(f[2])
		if err1 == nil && err2 == nil && int(local.Port()) == port && remote.Addr().Unmap() == from {
			return true
		}
	}
	return false
}

// TestInteropDebianWireguardGo: the wire stays standard WireGuard. A plain
// Debian wireguard-go, configured with wg and announced to the mesh by a
// gossip member with a genuine record for its key, becomes an ordinary peer
// of a segmesh node: ping and TCP echo work both ways over IPv4 and IPv6,
// both sides' wg show report a handshake and traffic, and the segmesh
// node's policy still applies to the foreign implementation (a port the
// policy does not allow times out).
func TestInteropDebianWireguardGo(t *testing.T) {
	harness.RequireNetns(t)
	requireWireguardGo(t)
	if out, err := exec.Command(debianWireguardGo, "--version").CombinedOutput(); err == nil {
		t.Logf("%s", strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	start := time.Now()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: interopPolicy})
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("app")})
	tc.Start(a)
	var self *harness.Status
	tc.WaitFor("node a serves its status", meshTimeout, func() error {
		if err := a.ExitError(); err != nil {
			return harness.Abort(err)
		}
		st, err := a.Status()
		if err != nil {
			return err
		}
		self = st
		return nil
	})
	checkSelf(t, a, self, tc.PublicKey(a))
	a4 := netip.MustParseAddr(self.Self.Address)
	a6 := netip.MustParseAddr(self.Self.Address6)
	aEndpoint := netip.AddrPortFrom(a.Addr, wireGuardPort)

	p := newPlainPeer(t, tc, self.Self.Address)
	p.startWireguardGo(t, tc)
	t.Cleanup(func() { // runs before wireguard-go is stopped
		if t.Failed() {
			out, err := p.node.Exec("wg", "show", p.node.Interface)
			t.Logf("plain peer wg show %s: %v\n%s", p.node.Interface, err, out)
		}
	})
	p.configure(t, self.Self.PublicKey, aEndpoint, a4, a6)
	plainEndpoint := netip.AddrPortFrom(p.node.Addr, wireGuardPort)

	// The forger runs in the plain peer's namespace: the endpoint segmesh
	// configures is the gossip address with the record's listen port.
	if err := p.node.StartCommand(bins.Forger,
		"-cluster-key", a.ClusterKeyPath(),
		"-bind", p.node.Addr.String(),
		"-join", a.GossipAddr(),
		"-name", "plain",
		"-private-key-file", p.keyFile,
		"-listen-port", fmt.Sprint(wireGuardPort),
		"-tags", "role=plain",
	); err != nil {
		t.Fatal(err)
	}
	waitPeer(tc, a, p.pub, "shows the plain wireguard-go peer up", interopUpTimeout, func(sp harness.StatusPeer, ok bool) error {
		if err := p.node.ExitError(); err != nil {
			return harness.Abort(fmt.Errorf("forger: %w", err))
		}
		switch {
		case !ok:
			return fmt.Errorf("plain peer not listed")
		case sp.State == harness.StateUntrusted:
			return harness.Abort(fmt.Errorf("plain peer's genuine record rejected: %s", sp.Reason))
		case sp.State != harness.StateUp:
			return fmt.Errorf("plain peer is %q (%s)", sp.State, sp.Reason)
		}
		return nil
	})
	st := tc.Status(a)
	sp, _ := st.Peer(p.pub)
	if sp.Address != p.addr4.String() || sp.Address6 != p.addr6.String() {
		t.Errorf("a sees the plain peer at %s %s, its key yields %s %s", sp.Address, sp.Address6, p.addr4, p.addr6)
	}
	if sp.Endpoint != plainEndpoint.String() {
		t.Errorf("a sees the plain peer at endpoint %q, want %s", sp.Endpoint, plainEndpoint)
	}
	if !sameStrings(sp.Segments, []string{"plain"}) {
		t.Errorf("a puts the plain peer in segments %v, want [plain]", sp.Segments)
	}
	t.Logf("TIMING plain peer up on a %v after the test started", time.Since(start).Round(time.Millisecond))

	// Ping both ways over IPv4 and IPv6.
	tc.Ping(a, p.addr4.String(), pingTimeout)
	tc.Ping(a, p.addr6.String(), pingTimeout)
	tc.Ping(p.node, a4.String(), pingTimeout)
	tc.Ping(p.node, a6.String(), pingTimeout)

	// TCP echo both ways; the servers see the peers' overlay addresses.
	srvA := startServer(t, tc, a.Namespace, "probe-a", []int{interopAllowed, interopDenied}, nil)
	srvP := startServer(t, tc, p.node.Namespace, "probe-plain", []int{interopPlainPort}, nil)
	toPlain := []flow{{"tcp", p.addr4, interopPlainPort}, {"tcp", p.addr6, interopPlainPort}}
	toA := []flow{{"tcp", a4, interopAllowed}, {"tcp", a6, interopAllowed}}
	denied := []flow{{"tcp", a4, interopDenied}, {"tcp", a6, interopDenied}}
	res, err := probeFlows(a.Namespace, 2*time.Second, toPlain)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range toPlain {
		if res[f] != resOK {
			t.Errorf("a -> plain %s: %s, want %s", f, res[f], resOK)
		}
	}
	res, err = probeFlows(p.node.Namespace, 2*time.Second, append(append([]flow(nil), toA...), denied...))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range toA {
		if res[f] != resOK {
			t.Errorf("plain -> a %s (allowed): %s, want %s", f, res[f], resOK)
		}
	}
	for _, f := range denied {
		if res[f] != resTimeout {
			t.Errorf("plain -> a %s (not allowed by the policy): %s, want %s", f, res[f], resTimeout)
		}
	}
	for _, want := range []struct {
		srv  *harness.Proc
		port int
		from netip.Addr
	}{
		{srvP, interopPlainPort, a4}, {srvP, interopPlainPort, a6},
		{srvA, interopAllowed, p.addr4}, {srvA, interopAllowed, p.addr6},
	} {
		if !serverSaw(want.srv.Output(), want.port, want.from) {
			t.Errorf("%s saw no connection to port %d from %s; output:\n%s", want.srv, want.port, want.from, want.srv.Output())
		}
	}
	if serverSaw(srvA.Output(), interopDenied, p.addr4) || serverSaw(srvA.Output(), interopDenied, p.addr6) {
		t.Errorf("a's server accepted a connection on the denied port %d:\n%s", interopDenied, srvA.Output())
	}

	// Both implementations report the session.
	for _, side := range []struct {
		name, pub string
		node      *harness.Node
		endpoint  netip.AddrPort
		allowed   []string
	}{
		{"segmesh node a", p.pub, a, plainEndpoint, []string{p.addr4.String() + "/32", p.addr6.String() + "/128"}},
		{"plain wireguard-go", self.Self.PublicKey, p.node, aEndpoint, []string{a4.String() + "/32", a6.String() + "/128"}},
	} {
		wg := tc.WireGuard(side.node)
		peer, ok := wg.Peers[side.pub]
		switch {
		case !ok:
			t.Errorf("%s: wg show %s does not list peer %s", side.name, side.node.Interface, side.pub)
			continue
		case peer.LatestHandshake.IsZero():
			t.Errorf("%s: wg show: no latest handshake with %s", side.name, side.pub)
		case peer.RxBytes == 0 || peer.TxBytes == 0:
			t.Errorf("%s: wg show: transfer rx %d tx %d, want both > 0", side.name, peer.RxBytes, peer.TxBytes)
		}
		if peer.Endpoint != side.endpoint.String() {
			t.Errorf("%s: wg show: peer endpoint %q, want %s", side.name, peer.Endpoint, side.endpoint)
		}
		if !sameStrings(peer.AllowedIPs, side.allowed) {
			t.Errorf("%s: wg show: peer allowed ips %v, want %v", side.name, peer.AllowedIPs, side.allowed)
		}
		t.Logf("%s: wg show: handshake %s, rx %d tx %d bytes", side.name,
			peer.LatestHandshake.Format(time.RFC3339), peer.RxBytes, peer.TxBytes)
	}
	tc.Stop(p.node)
	t.Logf("TIMING interop test body %v", time.Since(start).Round(time.Millisecond))
}
