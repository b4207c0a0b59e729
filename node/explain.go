package node

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// Explain resolves FROM and TO (names, keys or overlay IPs of this node or
// its admitted peers, each optionally followed by /WORKLOAD, see
// resolveEnd) and gives the active policy's verdict for port (see
// Explanation).
func (n *Node) Explain(from, to, port string) (*api.Explanation, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	members := append([]acl.Member{n.selfMember()}, n.view.admitted()...)
	declared := n.declaredWorkloads()
	fe, err := resolveEnd(members, declared, from)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	te, err := resolveEnd(members, declared, to)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	var version uint64
	if n.policy.doc != nil {
		version = n.policy.doc.Version
	}
	e, err := Explanation(n.policy.pol, version, fe.identity, te.identity, port)
	if err != nil {
		return nil, err
	}
	e.FromWorkload, e.ToWorkload = fe.workload, te.workload
	for _, note := range []string{fe.note, te.note} {
		if note != "" {
			e.Notes = append(e.Notes, note)
		}
	}
	return e, nil
}

// Explanation gives policy p's verdict (p is version version; nil allows
// nothing) for a flow from node from to node to on port: one flow, or a
// service of p or a built-in one of exactly one port. It lists how every
// rule fared.
func Explanation(p *acl.Policy, version uint64, from, to acl.Member, port string) (*api.Explanation, error) {
	pt, svc, err := p.FlowPort(port)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	v := acl.Explain(p, from, to, pt.Proto, pt.Lo)
	e := &api.Explanation{Verdict: "deny", From: from.Name, To: to.Name, FromSegments: nonNil(v.FromSegments),
		ToSegments: nonNil(v.ToSegments), Port: pt.String(), Rules: nonNil(v.Rules), Mode: string(v.Mode),
		Version: version, Service: svc, Considered: explainedRules(v.Trace)}
	if v.Allow {
		e.Verdict = "allow"
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

// errNoSuchNode is what resolve wraps when no member matches.
var errNoSuchNode = errors.New("no admitted node")

// resolve finds a member by name, public key or overlay address. A name
// that several members share is ambiguous.
func resolve(members []acl.Member, q string) (acl.Member, error) {
	if a, err := netip.ParseAddr(q); err == nil {
		for _, m := range members {
			if m.Addr4 == a || m.Addr6 == a {
				return m, nil
			}
		}
		return acl.Member{}, fmt.Errorf("%w has address %s", errNoSuchNode, q)
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
		return acl.Member{}, fmt.Errorf("%w named %q", errNoSuchNode, q)
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
