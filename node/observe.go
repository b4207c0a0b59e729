package node

import (
	"context"
	"fmt"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// Suggest proposes rules that would allow the observed denied and audited
// flows (visibility → enforcement): this node's, or with fleet every
// node's (Missing names the nodes that did not answer). Rules are
// segment-level: one per pair of the segments both ends are in.
func (n *Node) Suggest(ctx context.Context, fleet bool) (*api.Suggestion, error) {
	n.mu.Lock()
	pol, doc := n.policy.pol, n.policy.doc
	n.mu.Unlock()
	if pol == nil {
		return nil, fmt.Errorf("no active policy: apply one (e.g. in audit mode) first, so flows have segments")
	}
	all, nodes, missing, err := n.observations(ctx, fleet)
	if err != nil {
		return nil, err
	}
	var obs []api.Observation
	peerAPI := 0
	for _, o := range all {
		if o.Verdict != api.VerdictDenied && o.Verdict != api.VerdictAudited {
			continue
		}
		if n.isPeerAPI(o) {
			peerAPI++
			continue
		}
		obs = append(obs, o)
	}
	rules, unplaceable := acl.Suggest(pol, toACL(obs))
	out := &api.Suggestion{Version: doc.Version, Rules: acl.RenderRules(rules), Flows: len(obs), Unplaceable: []string{}, Missing: missing}
	if fleet {
		out.Nodes = nodes
	}
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
	if peerAPI > 0 {
		out.Unplaceable = append(out.Unplaceable, fmt.Sprintf(
			"%d flow(s) to the peer API (tcp/%d) left out: --fleet's own requests; to keep --fleet working in enforce mode add a rule from your operators' segment, e.g. {from: [ops], to: [\"*\"], ports: [tcp/%d]}",
			peerAPI, n.cfg.PeerAPIPort, n.cfg.PeerAPIPort))
	}
	return out, nil
}

// Diff compares content with the active policy and lists the observed flows
// that pass today (allowed, audited, live connections) it would newly deny:
// this node's, or with fleet every node's.
func (n *Node) Diff(ctx context.Context, content []byte, fleet bool) (*api.PolicyDiff, error) {
	next, err := acl.Parse("proposed policy", content)
	if err != nil {
		return nil, err
	}
	all, nodes, missing, err := n.observations(ctx, fleet)
	if err != nil {
		return nil, err
	}
	var passing []api.Observation
	for _, o := range all {
		if o.Verdict != api.VerdictDenied {
			passing = append(passing, o)
		}
	}
	n.mu.Lock()
	cur, doc := n.policy.pol, n.policy.doc
	n.mu.Unlock()
	obs := mergeObserved(toACL(passing))
	rules, segs, mode := acl.Diff(cur, next)
	cut := acl.NewlyDenied(cur, next, obs)
	out := &api.PolicyDiff{Text: acl.FormatDiff(rules, segs, mode, cut), NewlyDenied: []string{}, Observed: len(obs), Missing: missing}
	if fleet {
		out.Nodes = nodes
	}
	if doc != nil {
		out.Version = doc.Version
	}
	for _, o := range cut {
		out.NewlyDenied = append(out.NewlyDenied, describeObserved(o))
	}
	return out, nil
}

// observations are this node's observations, or with fleet every node's,
// with the nodes in and the missing ones.
func (n *Node) observations(ctx context.Context, fleet bool) ([]api.Observation, []string, []api.Missing, error) {
	if fleet {
		return n.fleetObserved(ctx)
	}
	own := n.Observed()
	return own.Observations, []string{own.Node}, []api.Missing{}, nil
}

// isPeerAPI reports whether o is a connection to the peer API's port.
func (n *Node) isPeerAPI(o api.Observation) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.PeerAPIPort != 0 && o.Proto == "tcp" && int(o.Port) == n.cfg.PeerAPIPort
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
	return fmt.Sprintf("%s %v -> %s %v %s (%d connections)", o.SrcName, o.SrcSegments, o.DstName, o.DstSegments, port, o.Count)
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
