package nft

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
)

// nodeEgress is an Egress with the node's identity only, towards the
// client (destination identity 1).
func nodeEgress(audit bool, grants ...acl.Grant) Egress {
	return Egress{Locals: []EgressLocal{{Grants: grants}}, Destinations: []acl.Source{src(cli4, 1), src(cli6, 1)}, Audit: audit}
}

func (p *meshPair) applyEgress(e Egress) {
	p.t.Helper()
	if err := p.fw.ApplyEgress(e); err != nil {
		p.t.Fatal(err)
	}
}

// connectOut connects from the server (the Firewall's side) to the client.
func (p *meshPair) connectOut(addr netip.Addr, port uint16) net.Conn {
	p.t.Helper()
	c, err := dialFrom(p.t, p.server, addr, port, 5*time.Second)
	if err != nil {
		p.t.Fatalf("server -> %v:%d: %v", addr, port, err)
	}
	if err := echo(c, 5*time.Second); err != nil {
		p.t.Fatalf("server -> %v:%d echo: %v", addr, port, err)
	}
	return c
}

// refusedOut checks that the server's connect fails at once (a reset from
// its own egress check, not a timeout).
func (p *meshPair) refusedOut(addr netip.Addr, port uint16) {
	p.t.Helper()
	start := time.Now()
	_, err := dialFrom(p.t, p.server, addr, port, 2*time.Second)
	d := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || d > 100*time.Millisecond {
		p.t.Fatalf("server -> %v:%d: %v after %v, want connection refused within 100ms", addr, port, err, d)
	}
}

func TestRootEgressNodeIdentity(t *testing.T) {
	p := newMeshPair(t)
	p.apply(enf(nil))
	// Before the first ApplyEgress only replies leave.
	p.refusedOut(cli4, 7070)
	p.refusedOut(cli6, 7070)

	tcp7070 := acl.Grant{Dest: 1, TCP: []acl.PortRange{pr(7070, 7070)}}
	p.applyEgress(nodeEgress(false, tcp7070))
	c := p.connectOut(cli4, 7070)
	p.connectOut(cli6, 7070)
	if _, err := p.server.Try("ping", "-c", "1", "-W", "1", cli4.String()); err == nil {
		t.Error("ping passed without icmp")
	}
	// A range keeps the flow; then a grant without the port cuts it at
	// once (every original-direction packet is checked) and refuses anew.
	p.applyEgress(nodeEgress(false, acl.Grant{Dest: 1, TCP: []acl.PortRange{pr(7000, 7100)}}))
	if err := echo(c, 2*time.Second); err != nil {
		t.Fatalf("flow after a covering range: %v", err)
	}
	p.applyEgress(nodeEgress(false, acl.Grant{Dest: 1, ICMP: true}))
	if err := echo(c, 2*time.Second); err == nil {
		t.Fatal("established flow still passes after its grant went")
	}
	p.refusedOut(cli4, 7070)
	p.refusedOut(cli6, 7070)
	p.server.Run("ping", "-c", "1", "-W", "2", cli4.String())
	p.server.Run("ping", "-6", "-c", "1", "-W", "2", cli6.String())
	den, err := p.fw.EgressDenied()
	if err != nil {
		t.Fatal(err)
	}
	if den[""][cli4].Packets == 0 || den[""][cli6].Packets == 0 {
		t.Errorf("egress denials not counted per destination: %v", den)
	}

	// Only the grant's destination identity: an overlay address of no
	// peer is refused even with "any".
	p.applyEgress(nodeEgress(false, acl.Grant{Dest: 1, Any: true}))
	p.connectOut(cli4, 7070)
	p.server.Run("ip", "route", "add", "100.80.0.9/32", "dev", "smesh0")
	p.refusedOut(netip.MustParseAddr("100.80.0.9"), 7070)

	// A destination joining is one element, one transaction.
	e := nodeEgress(false, tcp7070)
	p.applyEgress(e)
	g := p.server.gen()
	e.Destinations = append(e.Destinations[:1:1], src(netip.MustParseAddr("100.80.0.9"), 1), e.Destinations[1])
	p.applyEgress(e)
	if d := p.server.gen() - g; d != 1 {
		t.Errorf("a join took %d transactions", d)
	}
	if set := p.server.Run("nft", "list", "set", "inet", "segmesh", "dst_1_4"); !strings.Contains(set, "100.80.0.9") {
		t.Errorf("dst_1_4 lacks the new destination:\n%s", set)
	}

	// Audit mode: accepted (and logged).
	p.applyEgress(nodeEgress(true))
	p.connectOut(cli4, 7070)

	// A restart over the table: Install keeps it in enforce mode; the
	// first ApplyEgress reads it back and rewrites the egress part.
	f2 := p.server.firewall(testConfig())
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	p.refusedOut(cli4, 7070)
	p.fw = f2
	p.apply(enf(nil))
	p.applyEgress(nodeEgress(false, tcp7070))
	p.connectOut(cli4, 7070)

	// A workload: its cgroup goes to its chain, deepest level first; the
	// rest keeps the node's identity. Removing it deletes its objects.
	we := nodeEgress(false, tcp7070)
	we.Locals = append(we.Locals,
		EgressLocal{Name: "api", Cgroups: []Cgroup{{ID: 4242, Level: 2}}, Grants: []acl.Grant{{Dest: 1, TCP: []acl.PortRange{pr(5432, 5432), pr(6000, 6010)}}}},
		EgressLocal{Name: "cron", Cgroups: []Cgroup{{ID: 77, Level: 3}}})
	p.applyEgress(we)
	out := p.server.Run("nft", "list", "table", "inet", "segmesh")
	for _, want := range []string{"socket cgroupv2 level 3 ", "goto wl_cron", "goto wl_api", "goto out_node",
		"ip daddr @dst_1_4 meta l4proto . th dport @wl_api_1p accept", "@wl_api_1r", `log prefix "segmesh-out:api" group 8476`,
		"reject with tcp reset", "ct direction reply accept"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "goto wl_cron"), strings.Index(out, "goto wl_api"); i > j {
		t.Errorf("level 3 (cron) must come before level 2 (api):\n%s", out)
	}
	p.connectOut(cli4, 7070)
	p.applyEgress(nodeEgress(false, tcp7070))
	if out := p.server.Run("nft", "list", "table", "inet", "segmesh"); strings.Contains(out, "wl_") {
		t.Errorf("workload objects left:\n%s", out)
	}
	if err := p.fw.ApplyEgress(Egress{Locals: []EgressLocal{{Name: "x"}}}); err == nil {
		t.Error("an Egress without the node's identity first was accepted")
	}
}

func TestDiffSources(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("100.80.0.1"), netip.MustParseAddr("100.80.0.2"), netip.MustParseAddr("fd5e:6d00::3")
	cur := []acl.Source{src(a1, 1), src(a2, 1), src(a3, 2)}
	if adds, dels := diffSources(cur, cur); adds != nil || dels != nil {
		t.Fatalf("equal lists: %v %v", adds, dels)
	}
	// a2 moves to identity 2, a1 leaves, a3 stays.
	want := []acl.Source{src(a2, 2), src(a3, 2)}
	adds, dels := diffSources(cur, want)
	if len(adds) != 1 || len(adds[dstKey{2, 0}]) != 1 || len(dels) != 1 || len(dels[dstKey{1, 0}]) != 2 {
		t.Fatalf("adds %v dels %v", adds, dels)
	}
	for name, ok := range map[string]bool{"dst_1_4": true, "dst_12_6": true, "dst_01_4": false, "dst_1_5": false, "dst__4": false, "dst_0_4": false} {
		if _, _, got := parseDstSet(name); got != ok {
			t.Errorf("parseDstSet(%q) ok = %v", name, got)
		}
	}
}
