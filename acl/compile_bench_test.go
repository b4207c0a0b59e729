package acl

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
)

// benchSetup builds a policy with nRules rules over 20 role segments and 4
// env segments, a self in role r0 / env e0, and nPeers peers with IPv4 and
// IPv6 addresses spread over the segments.
func benchSetup(nPeers, nRules int) (*Policy, Member, []Member) {
	r := rand.New(rand.NewSource(1))
	p := &Policy{Mode: ModeEnforce}
	for i := range 20 {
		p.Segments = append(p.Segments, Segment{Name: fmt.Sprintf("r%d", i), Selector: map[string]string{"role": fmt.Sprintf("r%d", i)}})
	}
	for i := range 4 {
		p.Segments = append(p.Segments, Segment{Name: fmt.Sprintf("e%d", i), Selector: map[string]string{"env": fmt.Sprintf("e%d", i)}})
	}
	seg := func() string { return p.Segments[r.Intn(len(p.Segments))].Name }
	for i := range nRules {
		rule := Rule{Name: fmt.Sprintf("rule%d", i), From: []string{seg(), seg()}, To: []string{"r0", seg()}}
		if i%10 == 0 {
			rule.From = []string{Wildcard}
		}
		for range 1 + r.Intn(3) {
			lo := uint16(1 + r.Intn(60000))
			rule.Ports = append(rule.Ports, Port{Proto: []string{"tcp", "udp"}[r.Intn(2)], Lo: lo, Hi: lo + uint16(r.Intn(100))})
		}
		if i%7 == 0 {
			rule.Ports = append(rule.Ports, Port{Proto: "icmp"})
		}
		p.Rules = append(p.Rules, rule)
	}
	self := Member{Key: "self", Addr4: netip.MustParseAddr("100.80.0.1"), Addr6: netip.MustParseAddr("fd5e::1"),
		Tags: map[string]string{"role": "r0", "env": "e0"}}
	peers := make([]Member, nPeers)
	for i := range peers {
		peers[i] = Member{
			Key:   fmt.Sprintf("peer%d", i),
			Addr4: netip.AddrFrom4([4]byte{100, 81, byte(i >> 8), byte(i)}),
			Addr6: netip.AddrFrom16([16]byte{0xfd, 0x5e, 14: byte(i >> 8), 15: byte(i)}),
			Tags:  map[string]string{"role": fmt.Sprintf("r%d", r.Intn(20)), "env": fmt.Sprintf("e%d", r.Intn(4))},
		}
	}
	return p, self, peers
}

func BenchmarkCompile(b *testing.B) {
	for _, size := range []struct{ peers, rules int }{{1000, 100}, {10000, 20}} {
		b.Run(fmt.Sprintf("peers=%d/rules=%d", size.peers, size.rules), func(b *testing.B) {
			p, self, peers := benchSetup(size.peers, size.rules)
			d := Compile(p, self, peers)
			if len(d.Ports) == 0 {
				b.Fatal("the benchmark policy allows nothing")
			}
			b.ReportAllocs()
			for b.Loop() {
				Compile(p, self, peers)
			}
			b.ReportMetric(float64(len(d.Ports)), "elements")
		})
	}
}
