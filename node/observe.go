package node

import (
	"fmt"
	"net/netip"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/flows"
	"github.com/segmesh/segmesh/mesh"
)

// Suggest proposes rules that would allow the observed denied and audited
// flows (visibility → enforcement).
func (n *Node) Suggest() (*api.Suggestion, error) {
	obs := n.observedDenied()
	n.mu.Lock()
	pol, doc := n.policy.pol, n.policy.doc
	n.mu.Unlock()
	if pol == nil {
		return nil, fmt.Errorf("no active policy: apply one (e.g. in audit mode) first, so flows have segments")
	}
	rules, unplaceable := acl.Suggest(pol, obs)
	out := &api.Suggestion{Version: doc.Version, Rules: acl.RenderRules(rules), Flows: len(obs), Unplaceable: []string{}}
	if len(rules) > 0 {
		b, err := pol.WithRules(rules)
		if err != nil {
			return nil, fmt.Errorf("render policy with the suggested rules: %w", err)
		}
		out.Policy = string(b)
	}
	for _, u := range unplaceable {
		out.Unplaceable = append(out.Unplaceable, fmt.Sprintf("%s: %s", describeObserved(u.Observed), u.Reason))
	}
	return out, nil
}

// Diff compares content with the active policy and lists the observed flows
// (live inbound connections and audited flows) it would newly deny.
func (n *Node) Diff(content []byte) (*api.PolicyDiff, error) {
	next, err := acl.Parse("proposed policy", content)
	if err != nil {
		return nil, err
	}
	obs, err := n.observedPassing()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	cur, doc := n.policy.pol, n.policy.doc
	n.mu.Unlock()
	obs = mergeObserved(obs)
	rules, segs, mode := acl.Diff(cur, next)
	cut := acl.NewlyDenied(cur, next, obs)
	out := &api.PolicyDiff{Text: acl.FormatDiff(rules, segs, mode, cut), NewlyDenied: []string{}, Observed: len(obs)}
	if doc != nil {
		out.Version = doc.Version
	}
	for _, o := range cut {
		out.NewlyDenied = append(out.NewlyDenied, describeObserved(o))
	}
	return out, nil
}

// observedDenied turns the flow aggregates into observations.
func (n *Node) observedDenied() []acl.Observed {
	fl := n.Flows()
	n.mu.Lock()
	defer n.mu.Unlock()
	tags := n.tagsByKey()
	out := make([]acl.Observed, 0, len(fl))
	for _, f := range fl {
		out = append(out, acl.Observed{
			SrcSegments: f.SrcSegments, DstSegments: f.DstSegments, SrcTags: tags[f.SrcKey], DstTags: n.cfg.Tags,
			SrcName: nameOr(f.SrcName, f.SrcAddr), DstName: n.cfg.Name, Proto: f.Proto, Port: f.Port,
			Count: f.Count, Audited: f.Verdict == api.VerdictAudited,
		})
	}
	return out
}

// observedPassing is what passes today: live inbound connections from
// conntrack plus the audited flows (accepted, but denied by the rules).
func (n *Node) observedPassing() ([]acl.Observed, error) {
	n.mu.Lock()
	local := []netip.Addr{n.claim.Address, mesh.Address6(n.cfg.Network6, n.pub)}
	n.mu.Unlock()
	live, err := flows.InboundFlows(local)
	if err != nil {
		return nil, fmt.Errorf("read live connections: %w", err)
	}
	var out []acl.Observed
	for _, o := range n.observedDenied() {
		if o.Audited {
			out = append(out, o)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	tags := n.tagsByKey()
	for _, p := range live {
		peer, ok := n.byAddr[p.Src]
		if !ok {
			continue // not an admitted peer: nothing a policy change could cut
		}
		out = append(out, acl.Observed{
			SrcSegments: peer.Segments, DstSegments: n.segmentsOf(n.cfg.Tags), SrcTags: tags[peer.Key], DstTags: n.cfg.Tags,
			SrcName: peer.Name, DstName: n.cfg.Name, Proto: flows.ProtoName(p.Proto), Port: p.Port, Count: 1,
		})
	}
	return out, nil
}

// tagsByKey maps admitted peers' keys to their tags. Callers hold mu.
func (n *Node) tagsByKey() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, m := range n.view.admitted() {
		out[m.Key] = m.Tags
	}
	return out
}

func describeObserved(o acl.Observed) string {
	port := o.Proto
	if o.Port != 0 {
		port = fmt.Sprintf("%s/%d", o.Proto, o.Port)
	}
	return fmt.Sprintf("%s %v -> %s %v %s (%d packets)", o.SrcName, o.SrcSegments, o.DstName, o.DstSegments, port, o.Count)
}

func nameOr(name, addr string) string {
	if name == "" {
		return addr
	}
	return name
}

// mergeObserved folds observations of the same flow (a live connection that
// also has an audited aggregate) into one, summing counts; an audited one
// stays audited.
func mergeObserved(obs []acl.Observed) []acl.Observed {
	type key struct {
		src, dst, proto string
		port            uint16
	}
	idx := map[key]int{}
	var out []acl.Observed
	for _, o := range obs {
		k := key{o.SrcName, o.DstName, o.Proto, o.Port}
		if i, ok := idx[k]; ok {
			out[i].Count += o.Count
			out[i].Audited = out[i].Audited || o.Audited
			continue
		}
		idx[k] = len(out)
		out = append(out, o)
	}
	return out
}
