package main

import (
	"strconv"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/fleetmap"
)

// mapInput is what `segmesh map` draws from: the segments with their
// members, the active policy (nil: none), the flows (each with Node, the
// observing node, set), the nodes that did not answer, the local node's
// name, the window (0: all) and the current time.
type mapInput struct {
	Segments []api.SegmentView
	Policy   *acl.Policy
	Flows    []api.Flow
	Missing  []api.Missing
	Local    string
	Since    time.Duration
	Now      time.Time
}

// buildMap turns the flows into the dependency map. A flow into its node
// (direction in) goes from the peer's segments to the node's; an egress
// flow at the sender (out) from the sender's segments to the peer's. An
// audited flow is observed at both ends, so an out flow to a node that
// answered (one whose flows are in, or the local node) is dropped unless
// it was denied: a flow denied at the sender never reached the receiver.
// With Since > 0 only flows last seen within it count; a node answered
// whether or not its flows are that recent. Like fleetmap.Build's, the
// result keeps only the daemon's segments: the renderers add the implied
// ones (Unknown, "*").
func buildMap(in mapInput) fleetmap.Map {
	answered := map[string]bool{}
	if in.Local != "" {
		answered[in.Local] = true
	}
	for _, f := range in.Flows {
		if f.Node != "" {
			answered[f.Node] = true
		}
	}
	cutoff := time.Time{}
	if in.Since > 0 {
		cutoff = in.Now.Add(-in.Since)
	}
	var obs []fleetmap.Observation
	for _, f := range in.Flows {
		if in.Since > 0 && f.LastSeen.Before(cutoff) {
			continue
		}
		o := fleetmap.Observation{Verdict: f.Verdict, Port: flowPort(f), Connections: f.Connections}
		switch f.Direction {
		case api.DirectionOut:
			if answered[f.Peer] && f.Verdict != api.VerdictDenied {
				continue
			}
			o.From, o.To = f.SrcSegments, f.PeerSegments
		default:
			o.From, o.To = f.PeerSegments, f.DstSegments
		}
		obs = append(obs, o)
	}
	segs := make([]fleetmap.Segment, 0, len(in.Segments))
	for _, s := range in.Segments {
		segs = append(segs, fleetmap.Segment{Name: s.Name, Members: len(s.Members)})
	}
	m := fleetmap.Build(segs, obs, policyRules(in.Policy))
	m.Since = in.Since
	m.Missing = make([]fleetmap.Missing, 0, len(in.Missing))
	for _, x := range in.Missing {
		m.Missing = append(m.Missing, fleetmap.Missing{Node: x.Node, Reason: x.Reason})
	}
	return m
}

// flowPort is a flow's destination in the policy's notation: "tcp/5432",
// or the protocol alone when there is no port (ICMP).
func flowPort(f api.Flow) string {
	if f.Port == 0 {
		return f.Proto
	}
	return f.Proto + "/" + strconv.Itoa(int(f.Port))
}

// policyRules expands each rule into one fleetmap.Rule per (from, to)
// segment pair ("*" kept), with its ports as the policy writes them
// (services expanded).
func policyRules(pol *acl.Policy) []fleetmap.Rule {
	if pol == nil {
		return nil
	}
	var out []fleetmap.Rule
	for _, r := range pol.Rules {
		ports := make([]string, 0, len(r.Ports))
		for _, p := range r.Ports {
			ports = append(ports, p.String())
		}
		for _, from := range r.From {
			for _, to := range r.To {
				out = append(out, fleetmap.Rule{Name: r.Name, From: from, To: to, Ports: ports})
			}
		}
	}
	return out
}
