package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// model is the tests' own reading of a policy file (DESIGN.md "Policy
// file"), written independently of package acl so that the end-to-end tests
// check the product against the contract and not against itself.
type model struct {
	Mode     string                       `yaml:"mode"`
	Segments map[string]map[string]string `yaml:"segments"`
	Rules    []modelRule                  `yaml:"rules"`
}

type modelRule struct {
	Name  string   `yaml:"name"`
	From  []string `yaml:"from"`
	To    []string `yaml:"to"`
	Ports []string `yaml:"ports"`
}

// parseModel reads the parts of a policy the model needs (tests: ignored).
func parseModel(t *testing.T, src string) model {
	t.Helper()
	var m model
	if err := yaml.Unmarshal([]byte(src), &m); err != nil {
		t.Fatalf("model: parse policy: %v", err)
	}
	return m
}

// segmentsOf lists, sorted, the segments whose selector tags all match.
func (m model) segmentsOf(tags map[string]string) []string {
	var out []string
	for name, sel := range m.Segments {
		ok := len(sel) > 0
		for k, v := range sel {
			if tags[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// admits: the rule side lists "*" or one of segs.
func admits(list, segs []string) bool {
	for _, s := range list {
		if s == "*" || slices.Contains(segs, s) {
			return true
		}
	}
	return false
}

// portSpec is one ports entry: proto tcp|udp with [lo, hi], or icmp, or any.
type portSpec struct {
	proto  string
	lo, hi int
}

func parsePortSpec(s string) (portSpec, error) {
	proto, rng, ok := strings.Cut(s, "/")
	if !ok {
		if s == "icmp" || s == "any" {
			return portSpec{proto: s}, nil
		}
		return portSpec{}, fmt.Errorf("bad port %q", s)
	}
	loS, hiS, isRange := strings.Cut(rng, "-")
	if !isRange {
		hiS = loS
	}
	lo, err1 := strconv.Atoi(loS)
	hi, err2 := strconv.Atoi(hiS)
	if err1 != nil || err2 != nil || (proto != "tcp" && proto != "udp") {
		return portSpec{}, fmt.Errorf("bad port %q", s)
	}
	return portSpec{proto, lo, hi}, nil
}

func (p portSpec) matches(proto string, port int) bool {
	switch p.proto {
	case "any":
		return true
	case "icmp":
		return proto == "icmp"
	}
	return p.proto == proto && p.lo <= port && port <= p.hi
}

// allows gives the names of the rules allowing proto/port (port ignored
// for icmp) from a node with srcTags to one with dstTags.
func (m model) allows(srcTags, dstTags map[string]string, proto string, port int) []string {
	src, dst := m.segmentsOf(srcTags), m.segmentsOf(dstTags)
	var out []string
	for _, r := range m.Rules {
		if !admits(r.From, src) || !admits(r.To, dst) {
			continue
		}
		for _, ps := range r.Ports {
			p, err := parsePortSpec(ps)
			if err == nil && p.matches(proto, port) {
				out = append(out, r.Name)
				break
			}
		}
	}
	return out
}

// member is a node as the model sees it.
type member struct {
	name         string
	addr4, addr6 netip.Addr
	tags         map[string]string
}

// nftSets is the content of the sets of table inet segmesh, one normalized
// string per element: "ADDR" for address sets, "ADDR PROTO LO-HI" for the
// allow sets.
type nftSets map[string][]string

// expectedSets computes the sets DESIGN.md "nftables" requires on self:
// for every rule admitting self in To and every peer admitted by From, the
// peer's addresses get the rule's ports (tcp/udp ranges merged per source
// and protocol when they overlap or touch; single ports in allowN, wider
// ranges in the interval set allowNr), icmp and any in their sets; a source
// in any* has no other element.
func (m model) expectedSets(self member, peers []member) nftSets {
	type key struct {
		addr  netip.Addr
		proto string
	}
	ranges := map[key][][2]int{}
	icmp := map[netip.Addr]bool{}
	anyp := map[netip.Addr]bool{}
	selfSegs := m.segmentsOf(self.tags)
	for _, p := range peers {
		if p.name == self.name {
			continue
		}
		peerSegs := m.segmentsOf(p.tags)
		for _, r := range m.Rules {
			if !admits(r.To, selfSegs) || !admits(r.From, peerSegs) {
				continue
			}
			for _, ps := range r.Ports {
				spec, err := parsePortSpec(ps)
				if err != nil {
					continue
				}
				for _, a := range []netip.Addr{p.addr4, p.addr6} {
					switch spec.proto {
					case "icmp":
						icmp[a] = true
					case "any":
						anyp[a] = true
					default:
						k := key{a, spec.proto}
						ranges[k] = append(ranges[k], [2]int{spec.lo, spec.hi})
					}
				}
			}
		}
	}
	sets := nftSets{
		"local4": {self.addr4.String()}, "local6": {self.addr6.String()},
		"allow4": nil, "allow6": nil, "allow4r": nil, "allow6r": nil,
		"icmp4": nil, "icmp6": nil, "any4": nil, "any6": nil,
	}
	fam := func(a netip.Addr) string {
		if a.Is4() {
			return "4"
		}
		return "6"
	}
	for k, rs := range ranges {
		if anyp[k.addr] {
			continue
		}
		for _, r := range mergeRanges(rs) {
			name := "allow" + fam(k.addr) // single ports: the exact-match set
			if r[0] != r[1] {
				name += "r" // ranges: the interval set
			}
			sets[name] = append(sets[name], fmt.Sprintf("%s %s %d-%d", k.addr, k.proto, r[0], r[1]))
		}
	}
	for a := range icmp {
		if !anyp[a] {
			sets["icmp"+fam(a)] = append(sets["icmp"+fam(a)], a.String())
		}
	}
	for a := range anyp {
		sets["any"+fam(a)] = append(sets["any"+fam(a)], a.String())
	}
	for _, v := range sets {
		sort.Strings(v)
	}
	return sets
}

// mergeRanges merges overlapping or adjacent inclusive ranges.
func mergeRanges(rs [][2]int) [][2]int {
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out [][2]int
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// diff describes how got differs from want ("" when equal).
func (s nftSets) diff(got nftSets) string {
	var b strings.Builder
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want, have := s[n], got[n]
		var missing, extra []string
		for _, e := range want {
			if !slices.Contains(have, e) {
				missing = append(missing, e)
			}
		}
		for _, e := range have {
			if !slices.Contains(want, e) {
				extra = append(extra, e)
			}
		}
		if len(missing)+len(extra) > 0 {
			fmt.Fprintf(&b, "%s: missing %v, unexpected %v; ", n, missing, extra)
		}
	}
	return b.String()
}

// TestModelMergeRanges keeps the model honest where it is not trivial.
func TestModelMergeRanges(t *testing.T) {
	got := mergeRanges([][2]int{{9000, 9010}, {22, 22}, {23, 30}, {9005, 9020}, {100, 100}})
	want := [][2]int{{22, 30}, {100, 100}, {9000, 9020}}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeRanges: %v, want %v", got, want)
	}
	m := parseModel(t, `segments: {a: {role: a, env: x}, b: {role: b}}
rules:
  - {name: r, from: ["*"], to: [b], ports: [tcp/1-5, tcp/6, icmp]}`)
	if s := m.segmentsOf(map[string]string{"role": "a"}); len(s) != 0 {
		t.Fatalf("selector pairs must all match: %v", s)
	}
	self := member{name: "b", addr4: netip.MustParseAddr("100.80.0.2"), addr6: netip.MustParseAddr("fd5e:6d00::2"), tags: map[string]string{"role": "b"}}
	peer := member{name: "x", addr4: netip.MustParseAddr("100.80.0.3"), addr6: netip.MustParseAddr("fd5e:6d00::3")}
	sets := m.expectedSets(self, []member{self, peer})
	if !slices.Equal(sets["allow4r"], []string{"100.80.0.3 tcp 1-6"}) || !slices.Equal(sets["icmp6"], []string{"fd5e:6d00::3"}) {
		t.Fatalf("expectedSets: %v", sets)
	}
}
