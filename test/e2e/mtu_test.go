package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// mtuPolicy allows ping and iperf3 between all nodes.
const mtuPolicy = `mode: enforce
segments: {}
rules:
  - name: ping-and-iperf
    from: ["*"]
    to: ["*"]
    ports: [icmp, tcp/5201]
`

const (
	// linkMTU is the harness's veth MTU; mtu auto gives linkMTU - 80.
	linkMTU = 1500
	// smallPath is the route MTU A gets towards C's underlay address.
	smallPath = 1400
	// mtuLowerTimeout bounds how long a smaller path takes to lower the
	// interface MTU (node.mtuRecheck is 5 s, the sync loop ticks every second).
	mtuLowerTimeout = 15 * time.Second
	// mtuRaiseHold is node.mtuRaiseHold: the MTU goes back up no sooner.
	mtuRaiseHold = 10 * time.Second
	// iperfPort is iperf3's default port.
	iperfPort = 5201
)

var mtuRE = regexp.MustCompile(`\bmtu (\d+)\b`)

// ifaceMTU reads the MTU of n's WireGuard interface.
func ifaceMTU(n *harness.Node) (int, error) {
	out, err := n.Exec("ip", "-o", "link", "show", "dev", n.Interface)
	if err != nil {
		return 0, err
	}
	m := mtuRE.FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("no mtu in %q", out)
	}
	return strconv.Atoi(m[1])
}

func waitMTU(tc *harness.TestCluster, n *harness.Node, want int, timeout time.Duration) time.Duration {
	return tc.WaitFor(fmt.Sprintf("%s: %s MTU %d", n.Name, n.Interface, want), timeout, func() error {
		got, err := ifaceMTU(n)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s MTU is %d", n.Interface, got)
		}
		return nil
	})
}

func checkMTU(t *testing.T, n *harness.Node, want int, when string) {
	t.Helper()
	got, err := ifaceMTU(n)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s: %s: %s MTU %d, want %d", when, n.Name, n.Interface, got, want)
	}
}

// pingDF pings addr once from n with size bytes of payload and the don't
// fragment bit set (`ping -M do -s size`), retrying up to timeout.
func pingDF(n *harness.Node, addr string, size int, timeout time.Duration) error {
	return harness.WaitFor(timeout, func() error {
		_, err := n.Exec("ping", "-n", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(size), addr)
		return err
	})
}

// iperf runs iperf3 for a second from n to addr (reverse: from addr to n)
// and returns the bytes the receiver counted and the rate. (A fixed -n 1M
// test is not used: iperf3's receiver stops counting when the end-of-test
// message overtakes the data still in flight, so it under-reports small
// transfers.)
func iperf(n *harness.Node, addr string, reverse bool) (int64, float64, error) {
	argv := []string{"iperf3", "-c", addr, "-p", strconv.Itoa(iperfPort), "-t", "1", "--connect-timeout", "5000", "--json"}
	if reverse {
		argv = append(argv, "-R")
	}
	out, code, err := nsExec(n.Namespace, 30*time.Second, argv...)
	if err != nil || code != 0 {
		return 0, 0, fmt.Errorf("%s: exit %d, %v:\n%s", strings.Join(argv, " "), code, err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				Bytes int64   `json:"bytes"`
				BPS   float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, 0, fmt.Errorf("iperf3 json: %w:\n%s", err, out)
	}
	return res.End.SumReceived.Bytes, res.End.SumReceived.BPS, nil
}

// checkIperf wants at least 1 MiB over TCP from n to addr and back.
func checkIperf(t *testing.T, n *harness.Node, to string, addr string) {
	t.Helper()
	for _, reverse := range []bool{false, true} {
		from, dst := n.Name, to
		if reverse {
			from, dst = to, n.Name
		}
		got, bps, err := iperf(n, addr, reverse)
		if err != nil {
			t.Fatalf("TCP %s -> %s: %v", from, dst, err)
		}
		if got < 1<<20 {
			t.Fatalf("TCP %s -> %s: received %d bytes in 1 s, want at least 1 MiB", from, dst, got)
		}
		t.Logf("TCP %s -> %s over the overlay: %.1f MiB received in 1 s, %.0f Mbit/s", from, dst, float64(got)/(1<<20), bps/1e6)
	}
}

// dropFragments makes n drop (and count) IPv4 fragments from src before
// reassembly, as many real paths do: outer WireGuard packets too big for the
// path, fragmented by the sender, then never arrive.
func dropFragments(t *testing.T, n *harness.Node, src string) {
	t.Helper()
	for _, argv := range [][]string{
		{"nft", "add", "table", "ip", "mtutest"},
		{"nft", "add", "chain", "ip", "mtutest", "pre", "{ type filter hook prerouting priority -450; policy accept; }"},
		{"nft", "add", "rule", "ip", "mtutest", "pre", "ip", "saddr", src, "ip", "frag-off", "&", "0x3fff", "!=", "0", "counter", "drop"},
	} {
		if out, err := n.Exec(argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// droppedFragments reads the counter of dropFragments.
func droppedFragments(t *testing.T, n *harness.Node) int {
	t.Helper()
	out, err := n.Exec("nft", "list", "chain", "ip", "mtutest", "pre")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m := counterRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no counter in:\n%s", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

func logHas(t *testing.T, n *harness.Node, parts ...string) bool {
	t.Helper()
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestMTUAuto: with mtu auto, a route with `mtu 1400` from A to C's
// underlay address lowers A's interface MTU to 1320 while B and C stay at
// 1420; A<->C carries full-size DF pings and 1 MiB over TCP both ways, and
// A<->B still works. Removing the route brings A back to 1420, but not
// before the raise hold. wireguard-go follows the link MTU by itself.
func TestMTUAuto(t *testing.T) {
	requireTool(t, "iperf3")
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: mtuPolicy})
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("app"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("db"), Join: []string{a.GossipAddr()}})
	nodes := []*harness.Node{a, b, c}
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	self := selves(t, tc, nodes...)
	full := linkMTU - 80
	for _, n := range nodes {
		checkMTU(t, n, full, "before the route")
	}
	for _, n := range []*harness.Node{b, c} {
		tc.Spawn(n.Namespace, "iperf3-"+n.Name, "iperf3", "-s", "-p", strconv.Itoa(iperfPort))
	}

	// A's path to C shrinks and passes no fragments.
	dropFragments(t, c, a.Addr.String())
	if _, err := a.Exec("ip", "route", "add", c.Addr.String()+"/32", "dev", "eth0", "mtu", strconv.Itoa(smallPath)); err != nil {
		t.Fatal(err)
	}
	small := smallPath - 80
	took := waitMTU(tc, a, small, mtuLowerTimeout)
	t.Logf("TIMING mtu auto: route mtu %d -> A's interface MTU %d after %v", smallPath, small, took.Round(time.Millisecond))
	if !logHas(t, a, "mtu auto: interface MTU lowered", "peer=c", self[c].Self.PublicKey, "path_mtu=1400") {
		t.Errorf("a's log has no 'interface MTU lowered' line naming c and path_mtu=1400")
	}
	tc.WaitFor("wireguard-go on a picks up the new MTU", 5*time.Second, func() error {
		if logHas(t, a, "MTU updated: "+strconv.Itoa(small)) {
			return nil
		}
		return fmt.Errorf("a's log has no wireguard-go 'MTU updated: %d'", small)
	})
	checkMTU(t, b, full, "with A's small path")
	checkMTU(t, c, full, "with A's small path")

	// A full-size packet for the new MTU crosses; one byte more is refused
	// locally (the interface MTU is enforced).
	fit := small - 28 // ICMP 8 + IPv4 20
	if err := pingDF(a, self[c].Self.Address, fit, pingTimeout); err != nil {
		t.Fatalf("a -> c DF ping of %d bytes: %v", fit, err)
	}
	if out, err := a.Exec("ping", "-n", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(fit+1), self[c].Self.Address); err == nil {
		t.Fatalf("a -> c DF ping of %d bytes passed an interface MTU of %d:\n%s", fit+1, small, out)
	}
	checkIperf(t, a, "c", self[c].Self.Address)
	if n := droppedFragments(t, c); n != 0 {
		t.Errorf("c dropped %d fragments from a: A's WireGuard packets did not fit the %d path", n, smallPath)
	}
	// A <-> B still works.
	tc.Ping(a, self[b].Self.Address, pingTimeout)
	tc.Ping(b, self[a].Self.Address, pingTimeout)
	if err := pingDF(b, self[a].Self.Address, fit, pingTimeout); err != nil {
		t.Fatalf("b -> a DF ping of %d bytes: %v", fit, err)
	}
	checkIperf(t, a, "b", self[b].Self.Address)

	// The route goes: A rises back to the full MTU, after the hold.
	removed := time.Now()
	if _, err := a.Exec("ip", "route", "del", c.Addr.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	waitMTU(tc, a, full, mtuRaiseHold+mtuLowerTimeout)
	raised := time.Since(removed)
	t.Logf("TIMING mtu auto: route removed -> A's interface MTU back to %d after %v (hold %v)", full, raised.Round(time.Millisecond), mtuRaiseHold)
	if raised < mtuRaiseHold {
		t.Errorf("A's MTU went back up %v after the route was removed, before the %v hold", raised, mtuRaiseHold)
	}
	if !logHas(t, a, "mtu auto: interface MTU raised", "old=1320", "mtu=1420") {
		t.Errorf("a's log has no 'interface MTU raised' line old=1320 mtu=1420")
	}
	if err := pingDF(a, self[c].Self.Address, full-28, pingTimeout); err != nil {
		t.Fatalf("a -> c DF ping of %d bytes after the raise: %v", full-28, err)
	}
	checkMTU(t, b, full, "after the route")
	checkMTU(t, c, full, "after the route")
}
