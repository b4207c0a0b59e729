package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// Mode says what happens to traffic no rule allows.
type Mode string

const (
	// ModeEnforce drops traffic no rule allows (the default when a policy
	// file has no mode).
	ModeEnforce Mode = "enforce"
	// ModeAudit accepts traffic no rule allows, but logs and counts it.
	ModeAudit Mode = "audit"
)

// Wildcard in a rule's from means any admitted mesh node (whatever its
// segments); in a rule's to it means this node (whatever its segments).
const Wildcard = "*"

// Policy is a parsed and validated policy file. Rules only allow: what no
// rule allows into a node over the mesh is denied (or, in audit mode,
// accepted and logged). Parse produces policies whose names, references and
// ports are all valid; policies built by hand should respect the same rules
// (Compile and Explain ignore malformed ports and treat empty selectors as
// matching nothing).
type Policy struct {
	Mode     Mode
	Services []Service // the policy's own services, in file order (built-ins are not listed)
	Segments []Segment // in file order
	Rules    []Rule    // in file order
	Tests    []Test    // in file order
}

// Segment names a set of nodes by tags: a node is in the segment when every
// selector pair equals one of its tags and it meets every one of Terms. A
// node may be in several segments.
type Segment struct {
	Name     string
	Selector map[string]string // key: value pairs (exact match)
	Terms    []Term            // the other terms (lists, "*", "!key"), sorted by key
	Pos      Pos
	// In a parsed policy Selector and Terms are never both empty.
}

// Rule allows traffic from nodes in any of From to nodes in any of To on
// any of Ports. From and To hold segment names or Wildcard.
type Rule struct {
	Name     string
	From, To []string
	Ports    []Port      // every port the rule allows, services expanded, in file order
	Entries  []PortEntry // the ports list as written when it names a service (else nil: Ports is all there is)
	Pos      Pos
	// Comment, when set, is a one-line note RenderRules and WithRules write
	// as a YAML comment above the rule (Suggest's label for rules from
	// denied flows). Parse leaves it empty: comments are not read back.
	Comment string
}

// PortEntry is one entry of a rule's ports list as written: a port (Service
// empty, one Port) or a service name and its ports.
type PortEntry struct {
	Service string
	Ports   []Port
	Pos     Pos
}

// String gives the entry as written: the service name or the port.
func (e PortEntry) String() string {
	if e.Service == "" && len(e.Ports) == 1 {
		return e.Ports[0].String()
	}
	return e.Service
}

// Test is one expectation of the policy's tests section; see RunTests.
type Test struct {
	From, To string // segment names or Wildcard
	Port     Port   // a single flow: tcp/N, udp/N or icmp
	Service  string // the service the test's port names ("" when it is a port)
	Expect   string // "allow" or "deny"
	Pos      Pos
}

// Pos is a 1-based position in a policy file.
type Pos struct {
	Line, Col int
}

// Hash returns "sha256:<hex>" of the raw policy content. It identifies a
// policy document across the mesh (status, distribution tie-breaks).
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SegmentsOf returns the sorted names of the segments whose selectors all
// match tags (nil when none does, or p is nil). An empty selector matches no
// node.
func (p *Policy) SegmentsOf(tags map[string]string) []string {
	if p == nil {
		return nil
	}
	var out []string
	for i := range p.Segments {
		if p.Segments[i].matches(tags) {
			out = append(out, p.Segments[i].Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SegmentsOfMember returns the sorted segments member m is in: those of
// its node's tags and of every workload's (node tags and its own).
func (p *Policy) SegmentsOfMember(m Member) []string {
	out := p.SegmentsOf(m.Tags)
	if len(m.Workloads) == 0 {
		return out
	}
	for _, w := range m.Workloads {
		out = append(out, p.SegmentsOf(WorkloadTags(m.Tags, w))...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// matches reports whether a node with tags is in s.
func (s *Segment) matches(tags map[string]string) bool {
	if len(s.Selector) == 0 && len(s.Terms) == 0 {
		return false
	}
	for k, v := range s.Selector {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	for i := range s.Terms {
		if !s.Terms[i].matches(tags) {
			return false
		}
	}
	return true
}

// listAdmits reports whether a rule's from or to list admits a node in the
// segments segs: the list holds Wildcard or one of segs.
func listAdmits(names []string, segs []string) bool {
	for _, n := range names {
		if n == Wildcard || slices.Contains(segs, n) {
			return true
		}
	}
	return false
}
