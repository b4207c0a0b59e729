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
// segment-level: one per pair of the segments both ends are in. A rule
// from denied flows (enforce mode) carries a comment saying so; with
// auditOnly denied flows are left out (counted in LeftOut), so only what
// passed in audit mode is proposed.
func (n *Node) Suggest(ctx context.Context, fleet, auditOnly bool) (*api.Suggestion, error) {
	n.mu.Lock()
	pol, doc, peerAPIPort := n.policy.pol, n.policy.doc, n.cfg.PeerAPIPort
	n.mu.Unlock()
	if pol == nil {
		return nil, fmt.Errorf("no active policy: apply one (e.g. in audit mode) first, so flows have segments")
	}
	all, nodes, missing, err := n.observations(ctx, fleet)
	if err != nil {
		return nil, err
	}
	out, err := suggest(pol, doc.Version, all, auditOnly, peerAPIPort)
	if err != nil {
		return nil, err
	}
	out.Missing = missing
	if fleet {
		out.Nodes = nodes
	}
	return out, nil
}

// suggest is Suggest's answer for the observations all under pol (version
// v): the denied and audited ones (with auditOnly only the audited ones),
// less the peer API's (peerAPIPort, 0 for none), which are named in
// Unplaceable instead.
func suggest(pol *acl.Policy, v uint64, all []api.Observation, auditOnly bool, peerAPIPort int) (*api.Suggestion, error) {
	var obs []api.Observation
	peerAPI, denied, leftOut := 0, 0, 0
	for _, o := range all {
		if o.Verdict != api.VerdictDenied && o.Verdict != api.VerdictAudited {
			continue
		}
		if peerAPIPort != 0 && o.Proto == "tcp" && int(o.Port) == peerAPIPort {
			peerAPI++
			continue
		}
		if o.Verdict == api.VerdictDenied {
			if auditOnly {
				leftOut++
				continue
			}
			denied++
		}
		obs = append(obs, o)
	}
	rules, unplaceable := acl.Suggest(pol, toACL(obs))
	out := &api.Suggestion{Version: v, Rules: acl.RenderRules(rules), Flows: len(obs), Denied: denied, LeftOut: leftOut,
		Unplaceable: []string{}, Missing: []api.Missing{}}
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
			peerAPI, peerAPIPort, peerAPIPort))
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
