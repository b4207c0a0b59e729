package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// forwardPolicy lets web reach app on tcp/8080 only (and ping everywhere).
const forwardPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// The "container" behind gw: a namespace on a veth with a private address.
var (
	containerNet  = netip.MustParsePrefix("10.200.0.0/24")
	containerGW   = netip.MustParseAddr("10.200.0.1")
	containerAddr = netip.MustParseAddr("10.200.0.2")
)

// TestACLPortForwardAndUnderlay: gw port-forwards its overlay tcp/8080 and
// tcp/8081 to a container namespace behind it (DNAT in the host's own
// table ip hostnat). The ACL sees the port the peer sent to: the allowed
// 8080 reaches the container, 8081 does not. Nothing reaches the
// container's own address through the mesh (only to me), and a machine on
// the underlay that routes the overlay range to gw cannot reach gw's overlay
// addresses at all.
func TestACLPortForwardAndUnderlay(t *testing.T) {
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: forwardPolicy})
	gw := tc.AddNode(harness.NodeSpec{Name: "gw", Tags: role("app")})
	client := tc.AddNode(harness.NodeSpec{Name: "client", Tags: role("web"), Join: []string{gw.GossipAddr()}})
	outsider := tc.AddNode(harness.NodeSpec{Name: "outsider", Bare: true})
	tc.Start(gw, client)
	tc.WaitMesh(meshTimeout, gw, client)
	self := selves(t, tc, gw, client)
	gw4 := netip.MustParseAddr(self[gw].Self.Address)
	gw6 := netip.MustParseAddr(self[gw].Self.Address6)
	client4 := self[client].Self.Address
	tc.WaitFor("both nodes on one policy", 10*time.Second, func() error {
		p, err := policyOf(gw)
		if err != nil {
			return err
		}
		if p.Version == 0 {
			return fmt.Errorf("gw has no policy yet")
		}
		return hasPolicy(p.Version, p.Hash)(client)
	})
	tc.Ping(client, gw4.String(), pingTimeout)
	// The client plays root on its node (its egress check off): what it
	// sends reaches gw, whose ingress is under test here.
	bypassEgress(t, client)

	ctr := setupContainer(t, tc, gw, gw4)
	srv := startServer(t, tc, ctr, "serve-container", []int{8080, 8081, 8082}, []int{5353})
	gwSrv := startServer(t, tc, gw.Namespace, "serve-gw", []int{9090}, nil)

	t.Run("port forward", func(t *testing.T) {
		// Diagnostic: the container's answers as they come back into gw.
		replies := traceOverlay(t, gw, "e2ereplies", "ctr0", netip.MustParseAddr(client4), netip.MustParseAddr(self[client].Self.Address6))
		res, err := probeFlows(client.Namespace, denyTimeout, []flow{{"tcp", gw4, 8080}, {"tcp", gw4, 8081}})
		if err != nil {
			t.Fatal(err)
		}
		if got := res[flow{"tcp", gw4, 8080}]; got != resOK {
			r := replies()
			t.Errorf("client -> gw %s:8080 (allowed, forwarded): %q, want ok; packets from the container to the client on gw's ctr0: %d before segmesh's chain, %d after it",
				gw4, got, r.before4, r.after4)
		}
		if got := res[flow{"tcp", gw4, 8081}]; got != resTimeout {
			t.Errorf("client -> gw %s:8081 (not allowed, forwarded): %q, want timeout", gw4, got)
		}
		out := srv.Output()
		if want := "tcp " + containerAddr.String() + ":8080 " + client4 + ":"; !strings.Contains(out, want) {
			t.Errorf("the container did not see the allowed connection (%q):\n%s", want, out)
		}
		if strings.Contains(out, ":8081 ") {
			t.Errorf("the container saw a connection on the denied port 8081:\n%s", out)
		}
	})

	t.Run("only to me", func(t *testing.T) {
		direct := []flow{{"udp", containerAddr, 5353}, {"tcp", containerAddr, 8082}}
		if out, err := client.Exec("ip", "route", "add", containerNet.String(), "dev", client.Interface); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		res, err := probeFlows(client.Namespace, denyTimeout, direct)
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range direct {
			if res[fl] == resOK {
				t.Errorf("client -> container %s through the mesh: ok", fl)
			}
		}
		t.Logf("route only: WireGuard has no peer for %s: %v", containerNet, res)

		// A peer that puts the container's network into its WireGuard
		// allowed IPs for gw gets the packets onto gw's mesh interface;
		// gw must drop them (ip daddr != @local4). The client's daemon
		// reconciles its allowed IPs back within a second, so set them
		// right before each try.
		gwKey := self[gw].Self.PublicKey
		allowed := strings.Join([]string{gw4.String() + "/32", gw6.String() + "/128", containerNet.String()}, ",")
		before, err := onlyToMeCounter(gw.Namespace, "@local4")
		if err != nil {
			t.Fatal(err)
		}
		var after uint64
		tc.With(t).WaitFor("gw counts mesh packets for a non-local address", 10*time.Second, func() error {
			if out, err := client.Exec("wg", "set", client.Interface, "peer", gwKey, "allowed-ips", allowed); err != nil {
				return harness.Abort(fmt.Errorf("%v: %s", err, out))
			}
			res, err := probeFlows(client.Namespace, 300*time.Millisecond, direct)
			if err != nil {
				return harness.Abort(err)
			}
			for _, fl := range direct {
				if res[fl] == resOK {
					return harness.Abort(fmt.Errorf("client -> container %s through gw's mesh interface: ok", fl))
				}
			}
			if after, err = onlyToMeCounter(gw.Namespace, "@local4"); err != nil {
				return harness.Abort(err)
			}
			if after <= before {
				return fmt.Errorf("counter still %d", after)
			}
			return nil
		})
		t.Logf("gw's `ip daddr != @local4 counter drop` went %d -> %d", before, after)
		for _, port := range []string{":5353 ", ":8082 "} {
			if out := srv.Output(); strings.Contains(out, port) {
				t.Errorf("the container saw a packet sent to it directly through the mesh:\n%s", out)
			}
		}
	})

	t.Run("from the underlay", func(t *testing.T) {
		trace := traceOverlay(t, gw, "e2eunderlay", "eth0", gw4, gw6)
		gwLL := linkLocal(t, tc, gw, "eth0")
		if out, err := outsider.Exec("ip", "route", "add", overlay4.String(), "via", gw.Addr.String()); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if out, err := outsider.Exec("ip", "-6", "route", "add", overlay6.String(), "via", gwLL.WithZone("").String(), "dev", "eth0"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// gw's service answers on the underlay: a timeout below is not a
		// missing listener or route back.
		control := []flow{{"tcp", gw.Addr, 9090}, {"tcp", gwLL, 9090}}
		attacks := []flow{{"tcp", gw4, 9090}, {"tcp", gw4, 8080}, {"tcp", gw6, 9090}}
		res, err := probeFlows(outsider.Namespace, denyTimeout, append(control, attacks...))
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range control {
			if res[fl] != resOK {
				t.Errorf("outsider -> gw's underlay %s: %q, want ok", fl, res[fl])
			}
		}
		for _, fl := range attacks {
			if res[fl] != resTimeout {
				t.Errorf("outsider (underlay) -> gw's overlay %s: %q, want timeout", fl, res[fl])
			}
		}
		c := trace()
		t.Logf("packets from the underlay to gw's overlay addresses on gw's eth0: before segmesh's chain IPv4 %d, IPv6 %d; after it IPv4 %d, IPv6 %d",
			c.before4, c.before6, c.after4, c.after6)
		if c.before4 == 0 || c.before6 == 0 {
			t.Errorf("the underlay packets never reached gw: the test proves nothing")
		}
		if c.after4 != 0 || c.after6 != 0 {
			t.Errorf("underlay packets to gw's overlay addresses passed segmesh's chain")
		}
		if out := srv.Output(); strings.Contains(out, outsider.Addr.String()) {
			t.Errorf("the container saw the outsider:\n%s", out)
		}
		if out := gwSrv.Output(); strings.Count(out, "tcp ") != 2 {
			t.Errorf("gw's server should have seen only the two underlay control connections:\n%s", out)
		}
	})
}

// setupContainer creates the container namespace behind gw: a veth
// (ctr0 in gw, eth0 in the container) on containerNet, IPv4 forwarding on in
// gw, and the host's own port forward of gw's overlay tcp/8080 and 8081 to
// the container (table ip hostnat, prerouting dnat at priority -100).
func setupContainer(t *testing.T, tc *harness.TestCluster, gw *harness.Node, gw4 netip.Addr) string {
	t.Helper()
	ctr := tc.AddNamespace("ctr")
	gwPrefix := netip.PrefixFrom(containerGW, containerNet.Bits()).String()
	ctrPrefix := netip.PrefixFrom(containerAddr, containerNet.Bits()).String()
	for _, s := range [][]string{
		{"ip", "-n", gw.Namespace, "link", "add", "ctr0", "type", "veth", "peer", "name", "eth0", "netns", ctr},
		{"ip", "-n", gw.Namespace, "addr", "add", gwPrefix, "dev", "ctr0"},
		{"ip", "-n", gw.Namespace, "link", "set", "ctr0", "up"},
		{"ip", "-n", ctr, "addr", "add", ctrPrefix, "dev", "eth0"},
		{"ip", "-n", ctr, "link", "set", "eth0", "up"},
		{"ip", "-n", ctr, "route", "add", "default", "via", containerGW.String()},
	} {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	if out, err := gw.Exec("sysctl", "-w", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	nat := fmt.Sprintf(`table ip hostnat {
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		ip daddr %s tcp dport { 8080, 8081 } dnat to %s
	}
}
`, gw4, containerAddr)
	file := filepath.Join(gw.Dir, "hostnat.nft")
	if err := os.WriteFile(file, []byte(nat), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := gw.Exec("nft", "-f", file); err != nil {
		t.Fatalf("load table ip hostnat: %v: %s", err, out)
	}
	return ctr
}

// traceCounts are packets counted by traceOverlay, for IPv4 and IPv6,
// before segmesh's prerouting chain (priority -300) and after it (-140).
type traceCounts struct{ before4, before6, after4, after6 uint64 }

// traceOverlay installs a table of the test's own, inet TABLE, counting
// packets that arrive on iface for a4/a6 just before segmesh's chain
// (priority -150) and just after it (and before DNAT at -100). Whatever is
// counted before but not after was dropped by segmesh. The returned
// function reads the counters.
func traceOverlay(t *testing.T, n *harness.Node, table, iface string, a4, a6 netip.Addr) func() traceCounts {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for _, c := range []struct {
		name string
		prio int
	}{{"before", -300}, {"after", -140}} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook prerouting priority %d; policy accept;\n", c.name, c.prio)
		fmt.Fprintf(&b, "\t\tiifname %q ip daddr %s counter\n\t\tiifname %q ip6 daddr %s counter\n\t}\n", iface, a4, iface, a6)
	}
	b.WriteString("}\n")
	file := filepath.Join(n.Dir, table+".nft")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Exec("nft", "-f", file); err != nil {
		t.Fatalf("load table inet %s: %v: %s", table, err, out)
	}
	read := func(chain string) (uint64, uint64) {
		objs, err := nftObjects(n.Namespace, "list", "chain", "inet", table, chain)
		if err != nil {
			t.Fatal(err)
		}
		var counts []uint64
		for _, o := range objs {
			raw, ok := o["rule"]
			if !ok {
				continue
			}
			var r struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			for _, e := range r.Expr {
				if c, ok := e["counter"]; ok {
					var cnt struct {
						Packets uint64 `json:"packets"`
					}
					if err := json.Unmarshal(c, &cnt); err != nil {
						t.Fatal(err)
					}
					counts = append(counts, cnt.Packets)
				}
			}
		}
		if len(counts) != 2 {
			t.Fatalf("table %s chain %s: %d counters, want 2", table, chain, len(counts))
		}
		return counts[0], counts[1]
	}
	return func() traceCounts {
		var c traceCounts
		c.before4, c.before6 = read("before")
		c.after4, c.after6 = read("after")
		return c
	}
}

// linkLocal returns n's IPv6 link-local address on iface (with the zone
// iface, for dialing from a neighbour), once it is no longer tentative.
func linkLocal(t *testing.T, tc *harness.TestCluster, n *harness.Node, iface string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	tc.WaitFor(n.Name+" has a usable link-local address on "+iface, 10*time.Second, func() error {
		out, err := n.Exec("ip", "-j", "-6", "addr", "show", "dev", iface, "scope", "link")
		if err != nil {
			return err
		}
		var links []struct {
			AddrInfo []struct {
				Local     string `json:"local"`
				Tentative bool   `json:"tentative"`
			} `json:"addr_info"`
		}
		if err := json.Unmarshal(out, &links); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		for _, l := range links {
			for _, a := range l.AddrInfo {
				if addr, err := netip.ParseAddr(a.Local); err == nil && !a.Tentative {
					ll = addr.WithZone(iface)
					return nil
				}
			}
		}
		return fmt.Errorf("no usable link-local address: %s", out)
	})
	return ll
}
