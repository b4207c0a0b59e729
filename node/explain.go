package node

import (
	"fmt"
	"net/netip"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// Explain resolves FROM and TO (names, keys or overlay IPs of this node or
// its admitted peers) and gives the active policy's verdict for port (one
// flow, or a service of the active policy or a built-in one of one port),
// with how every rule fared.
func (n *Node) Explain(from, to, port string) (*api.Explanation, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, svc, err := n.policy.pol.FlowPort(port)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	members := append([]acl.Member{n.selfMember()}, n.view.admitted()...)
	fm, err := resolve(members, from)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	tm, err := resolve(members, to)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	v := acl.Explain(n.policy.pol, fm, tm, p.Proto, p.Lo)
	e := &api.Explanation{Verdict: "deny", From: fm.Name, To: tm.Name, FromSegments: nonNil(v.FromSegments),
		ToSegments: nonNil(v.ToSegments), Port: p.String(), Rules: nonNil(v.Rules), Mode: string(v.Mode),
		Service: svc, Considered: explainedRules(v.Trace)}
	if v.Allow {
		e.Verdict = "allow"
	}
	if n.policy.doc != nil {
		e.Version = n.policy.doc.Version
	}
	return e, nil
}

// explainedRules converts acl's rule traces to the API's form (never nil).
func explainedRules(trace []acl.RuleTrace) []api.ExplainedRule {
	segs := func(ts []acl.SegmentTrace) []api.ExplainedSegment {
		out := make([]api.ExplainedSegment, len(ts))
		for i, s := range ts {
			out[i] = api.ExplainedSegment{Segment: s.Segment, Match: s.Match}
			for _, t := range s.Terms {
				out[i].Terms = append(out[i].Terms, api.ExplainedTerm{Term: t.Term, Match: t.Match, Tag: t.Tag, Present: t.Present, Value: t.Value})
			}
		}
		return out
	}
	out := make([]api.ExplainedRule, len(trace))
	for i, r := range trace {
		out[i] = api.ExplainedRule{Rule: r.Rule, Allow: r.Allow, From: segs(r.From), FromMatch: r.FromMatch,
			To: segs(r.To), ToMatch: r.ToMatch, Ports: nonNil(r.Entries), PortMatch: r.Entry, Service: r.Service}
	}
	return out
}

// resolve finds a member by name, public key or overlay address. A name
// that several members share is ambiguous.
func resolve(members []acl.Member, q string) (acl.Member, error) {
	if a, err := netip.ParseAddr(q); err == nil {
		for _, m := range members {
			if m.Addr4 == a || m.Addr6 == a {
				return m, nil
			}
		}
		return acl.Member{}, fmt.Errorf("no admitted node has address %s", q)
	}
	var found []acl.Member
	for _, m := range members {
		if m.Key == q {
			return m, nil
		}
		if m.Name == q {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return acl.Member{}, fmt.Errorf("no admitted node named %q", q)
	default:
		return acl.Member{}, fmt.Errorf("%d nodes are named %q: give a key or an address", len(found), q)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
