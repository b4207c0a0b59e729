package acl

import (
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The property test compares Compile with a brute-force evaluator written
// from the policy semantics alone, on random memberships and policies whose
// ports stay inside 1..propMaxPort so every allowed flow can be enumerated.

const propMaxPort = 40

var (
	propKeys = []string{"role", "env", "zone"}
	propVals = []string{"a", "b", "c"}
)

// propFlow is one (source, protocol, port) the brute force can enumerate.
// proto "other" stands for a protocol only "any" allows.
type propFlow struct {
	src   netip.Addr
	proto string
	port  uint16
}

// propFlows is every (protocol, port) pair considered, without source.
var propFlows = propUniverse()

// propUniverse lists every (protocol, port) pair considered.
func propUniverse() []propFlow {
	var out []propFlow
	for _, proto := range []string{"tcp", "udp"} {
		for p := uint16(1); p <= propMaxPort; p++ {
			out = append(out, propFlow{proto: proto, port: p})
		}
	}
	return append(out, propFlow{proto: "icmp"}, propFlow{proto: "other"})
}

func propTags(r *rand.Rand) map[string]string {
	var tags map[string]string
	for _, k := range propKeys {
		if r.Intn(2) == 0 {
			if tags == nil {
				tags = map[string]string{}
			}
			tags[k] = propVals[r.Intn(len(propVals))]
		}
	}
	return tags
}

func propPolicy(r *rand.Rand) *Policy {
	p := &Policy{Mode: ModeEnforce}
	if r.Intn(4) == 0 {
		p.Mode = ModeAudit
	}
	var names []string
	for i := range r.Intn(6) {
		sel := map[string]string{}
		for range 1 + r.Intn(2) {
			sel[propKeys[r.Intn(len(propKeys))]] = propVals[r.Intn(len(propVals))]
		}
		name := fmt.Sprintf("s%d", i)
		names = append(names, name)
		p.Segments = append(p.Segments, Segment{Name: name, Selector: sel})
	}
	refs := func() []string {
		var out []string
		for range 1 + r.Intn(3) {
			if len(names) == 0 || r.Intn(7) == 0 {
				out = append(out, Wildcard)
			} else {
				out = append(out, names[r.Intn(len(names))])
			}
		}
		return out
	}
	for i := range r.Intn(7) {
		rule := Rule{Name: fmt.Sprintf("r%d", i), From: refs(), To: refs()}
		for range 1 + r.Intn(4) {
			switch n := r.Intn(20); {
			case n == 0:
				rule.Ports = append(rule.Ports, Port{Proto: "any"})
			case n < 4:
				rule.Ports = append(rule.Ports, Port{Proto: "icmp"})
			default:
				lo := uint16(1 + r.Intn(propMaxPort))
				hi := lo + uint16(r.Intn(min(8, propMaxPort-int(lo)+1)))
				rule.Ports = append(rule.Ports, Port{Proto: []string{"tcp", "udp"}[r.Intn(2)], Lo: lo, Hi: hi})
			}
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

// propMembers returns self and the peers handed to Compile (which may
// include self, and may share addresses).
func propMembers(r *rand.Rand) (Member, []Member) {
	n := 2 + r.Intn(11)
	nodes := make([]Member, n)
	for i := range nodes {
		m := Member{Key: "k" + strconv.Itoa(i), Name: "n" + strconv.Itoa(i), Tags: propTags(r)}
		if r.Intn(7) != 0 {
			m.Addr4 = netip.AddrFrom4([4]byte{100, 80, 0, byte(i + 1)})
		}
		if r.Intn(3) != 0 {
			m.Addr6 = netip.MustParseAddr(fmt.Sprintf("fd5e::%x", i+1))
		}
		if i > 0 && r.Intn(20) == 0 {
			m.Addr4 = nodes[r.Intn(i)].Addr4 // a clash (or an invalid address)
		}
		nodes[i] = m
	}
	peers := nodes[1:]
	if r.Intn(5) == 0 {
		again := nodes[0]
		if r.Intn(2) == 0 {
			again.Addr6 = netip.MustParseAddr("fd5e::ff") // a stale record of self
		}
		peers = append([]Member{again}, peers...)
	}
	return nodes[0], peers
}

// bruteInSegment: a node is in a named segment when all pairs of a segment
// of that name are among its tags.
func bruteInSegment(p *Policy, name string, tags map[string]string) bool {
	for _, s := range p.Segments {
		if s.Name != name || len(s.Selector) == 0 {
			continue
		}
		all := true
		for k, v := range s.Selector {
			if tv, ok := tags[k]; !ok || tv != v {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

func bruteListHas(p *Policy, list []string, tags map[string]string) bool {
	for _, name := range list {
		if name == Wildcard || bruteInSegment(p, name, tags) {
			return true
		}
	}
	return false
}

func bruteAllows(pt Port, f propFlow) bool {
	switch {
	case pt.Proto == "any":
		return true
	case pt.Proto != f.proto:
		return false
	case f.proto == "icmp":
		return true
	default:
		return pt.Lo <= f.port && f.port <= pt.Hi
	}
}

// bruteAllowed enumerates every flow the policy lets into self, per source
// address, by looping over peers, addresses, rules, flows and port entries.
func bruteAllowed(p *Policy, self Member, peers []Member) map[propFlow]bool {
	out := map[propFlow]bool{}
	mine := map[netip.Addr]bool{}
	for _, a := range []netip.Addr{self.Addr4, self.Addr6} {
		if a.IsValid() {
			mine[a] = true
		}
	}
	for _, peer := range peers {
		if peer.Key == self.Key {
			continue
		}
		for _, a := range []netip.Addr{peer.Addr4, peer.Addr6} {
			if !a.IsValid() || mine[a] {
				continue
			}
			for _, rule := range p.Rules {
				if !bruteListHas(p, rule.To, self.Tags) || !bruteListHas(p, rule.From, peer.Tags) {
					continue
				}
				for _, f := range propFlows {
					for _, pt := range rule.Ports {
						if bruteAllows(pt, f) {
							f.src = a
							out[f] = true
						}
					}
				}
			}
		}
	}
	return out
}

// expandDesired lists every flow in the universe that d allows.
func expandDesired(t *testing.T, d Desired) map[propFlow]bool {
	t.Helper()
	out := map[propFlow]bool{}
	for _, e := range d.Ports {
		proto := map[uint8]string{ProtoTCP: "tcp", ProtoUDP: "udp"}[e.Proto]
		if e.PortHi > propMaxPort {
			t.Fatalf("element %+v outside the port universe", e)
		}
		for p := e.PortLo; p <= e.PortHi; p++ {
			out[propFlow{src: e.Src, proto: proto, port: p}] = true
		}
	}
	for _, a := range d.ICMP {
		out[propFlow{src: a, proto: "icmp"}] = true
	}
	for _, a := range d.Any {
		for _, f := range propFlows {
			f.src = a
			out[f] = true
		}
	}
	return out
}

// renderPolicy writes p as a policy file.
func renderPolicy(p *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\n", p.Mode)
	if len(p.Segments) > 0 {
		b.WriteString("segments:\n")
		for _, s := range p.Segments {
			var pairs []string
			for k, v := range s.Selector {
				pairs = append(pairs, k+": "+strconv.Quote(v))
			}
			fmt.Fprintf(&b, "  %s: {%s}\n", s.Name, strings.Join(pairs, ", "))
		}
	}
	quoteAll := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = strconv.Quote(s)
		}
		return strings.Join(q, ", ")
	}
	if len(p.Rules) > 0 {
		b.WriteString("rules:\n")
		for _, r := range p.Rules {
			ports := make([]string, len(r.Ports))
			for i, pt := range r.Ports {
				ports[i] = pt.String()
			}
			fmt.Fprintf(&b, "  - name: %s\n    from: [%s]\n    to: [%s]\n    ports: [%s]\n",
				strconv.Quote(r.Name), quoteAll(r.From), quoteAll(r.To), strings.Join(ports, ", "))
		}
	}
	return b.String()
}

func stripPositions(p *Policy) {
	for i := range p.Segments {
		p.Segments[i].Pos = Pos{}
	}
	for i := range p.Rules {
		p.Rules[i].Pos = Pos{}
	}
}

func TestCompileMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(20240611))
	iterations := 2000
	if testing.Short() {
		iterations = 300
	}
	var allowedTotal int
	for it := range iterations {
		p := propPolicy(r)
		self, peers := propMembers(r)

		// The generated policy survives a trip through its file form.
		src := renderPolicy(p)
		parsed, err := Parse("gen.yaml", []byte(src))
		if err != nil {
			t.Fatalf("iteration %d: Parse of generated policy:\n%s\n%v", it, src, err)
		}
		stripPositions(parsed)
		if !reflect.DeepEqual(parsed, p) {
			t.Fatalf("iteration %d: round trip differs:\n%s\ngot  %+v\nwant %+v", it, src, parsed, p)
		}

		d := Compile(p, self, peers)
		polCheckDesired(t, d)
		if d.Audit != (p.Mode == ModeAudit) {
			t.Fatalf("iteration %d: Audit = %v for mode %s", it, d.Audit, p.Mode)
		}
		if want := memberAddrsBrute(self); !reflect.DeepEqual(d.Local, want) {
			t.Fatalf("iteration %d: Local = %v, want %v", it, d.Local, want)
		}
		got, want := expandDesired(t, d), bruteAllowed(p, self, peers)
		allowedTotal += len(want)
		if !reflect.DeepEqual(got, want) {
			var diff []string
			for f := range want {
				if !got[f] {
					diff = append(diff, fmt.Sprintf("missing %v %s/%d", f.src, f.proto, f.port))
				}
			}
			for f := range got {
				if !want[f] {
					diff = append(diff, fmt.Sprintf("extra %v %s/%d", f.src, f.proto, f.port))
				}
			}
			t.Fatalf("iteration %d: Compile differs from brute force (%d differences, e.g. %v)\npolicy:\n%s\nself %+v\npeers %+v",
				it, len(diff), diff[:min(5, len(diff))], src, self, peers)
		}
		propCheckExplain(t, it, p, self, peers, want)
	}
	if allowedTotal == 0 {
		t.Fatalf("the random policies never allowed anything: the test proves nothing")
	}
}

// memberAddrsBrute is Local as documented: valid addresses, IPv4 first.
func memberAddrsBrute(m Member) []netip.Addr {
	var out []netip.Addr
	if m.Addr4.IsValid() {
		out = append(out, m.Addr4)
	}
	if m.Addr6.IsValid() {
		out = append(out, m.Addr6)
	}
	return out
}

// propCheckExplain checks that Explain agrees with the brute force for
// every peer whose addresses are its own alone.
func propCheckExplain(t *testing.T, it int, p *Policy, self Member, peers []Member, want map[propFlow]bool) {
	t.Helper()
	owners := map[netip.Addr]int{}
	for _, a := range memberAddrs(self) {
		owners[a]++
	}
	for _, m := range peers {
		if m.Key != self.Key {
			for _, a := range memberAddrs(m) {
				owners[a]++
			}
		}
	}
	for _, peer := range peers {
		if peer.Key == self.Key {
			continue
		}
		for _, a := range memberAddrs(peer) {
			if owners[a] != 1 {
				continue
			}
			for _, f := range propFlows {
				v := Explain(p, peer, self, f.proto, f.port)
				f.src = a
				if v.Allow != want[f] {
					t.Fatalf("iteration %d: Explain(%s -> self, %s/%d) = %+v, brute force says %v", it, peer.Name, f.proto, f.port, v, want[f])
				}
			}
			break // Explain does not depend on the address: one is enough
		}
	}
}
