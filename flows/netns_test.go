package flows

import (
	"fmt"
	"testing"

	"github.com/segmesh/segmesh/internal/netnstest"
)

// requireRoot skips a test that needs root, network namespaces and nft(8),
// unless CI=true, where it fails instead.
func requireRoot(t testing.TB) { netnstest.RequireRoot(t, "nft") }

type testNS = netnstest.NS

func newTestNS(t testing.TB) *testNS { return netnstest.New(t, "smflows") }

// Test topology: namespace a (10.231.0.2, fd99:231::2 on veth va) talks to
// namespace b (10.231.0.1, fd99:231::1 on vb). In b, table inet flowstest
// logs every original-direction packet addressed to b's veth addresses to
// NFLOG group testGroup, like acl's mesh_in chain does.
const (
	testGroup = 8477
	aAddr4    = "10.231.0.2"
	bAddr4    = "10.231.0.1"
	aAddr6    = "fd99:231::2"
	bAddr6    = "fd99:231::1"
)

type nsPair struct{ a, b *testNS }

func newNSPair(t *testing.T) *nsPair {
	t.Helper()
	requireRoot(t)
	p := &nsPair{a: newTestNS(t), b: newTestNS(t)}
	p.a.Run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", p.b.Name)
	p.a.Run("ip", "addr", "add", aAddr4+"/24", "dev", "va")
	p.a.Run("ip", "-6", "addr", "add", aAddr6+"/64", "dev", "va", "nodad")
	p.a.Run("ip", "link", "set", "va", "up")
	p.b.Run("ip", "addr", "add", bAddr4+"/24", "dev", "vb")
	p.b.Run("ip", "-6", "addr", "add", bAddr6+"/64", "dev", "vb", "nodad")
	p.b.Run("ip", "link", "set", "vb", "up")
	p.a.WaitUp("va")
	p.b.WaitUp("vb")
	p.b.Nft(fmt.Sprintf(`table inet flowstest {
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		iifname "vb" ip daddr %s ct direction original log group %d snaplen 128
		iifname "vb" ip6 daddr %s ct direction original log group %d snaplen 128
	}
}
`, bAddr4, testGroup, bAddr6, testGroup))
	return p
}
