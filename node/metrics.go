package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/metrics"
)

// observeInterval keeps the per-source kernel counters read well within
// their 10-minute idle timeout, so totals stay monotonic.
const observeInterval = time.Minute

// startMetrics serves metrics_listen (when set) until shutdown.
func (n *Node) startMetrics() error {
	reg, rec := metrics.NewRegistry(metricsSource{n}, metrics.WithLogger(n.log.With("sub", "metrics")))
	n.recorder = rec
	if n.cfg.MetricsListen == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := metrics.Listen(ctx, n.cfg.MetricsListen, metrics.Handler(reg, n.readiness), n.log.With("sub", "metrics"))
	if err != nil {
		cancel()
		return err
	}
	n.stopMetrics = func() error { cancel(); return srv.Wait() }
	return nil
}

// readiness is /readyz: interface up, table in place and enforced, joined
// (when seeds are configured).
func (n *Node) readiness() error {
	n.mu.Lock()
	ready, seeds := n.ready, len(n.cfg.Gossip.Join)
	n.mu.Unlock()
	switch {
	case !ready:
		return errors.New("not ready: interface, nftables table or WireGuard peers not in place yet")
	case seeds > 0 && n.gossip.NumMembers() < 2:
		return errors.New("not ready: not joined to the mesh (no seed or cached peer reachable yet)")
	}
	return nil
}

// observeDenied folds the kernel's per-source counters into the monotonic
// totals, attributing growth to the mode in force now.
func (n *Node) observeDenied() (denied, audited map[metrics.SegmentPair]uint64, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.observeDeniedLocked()
}

// observeDeniedLocked is observeDenied for callers holding mu (the kernel
// read does not touch node state).
func (n *Node) observeDeniedLocked() (denied, audited map[metrics.SegmentPair]uint64, err error) {
	by, err := n.fw.DeniedBySource()
	if err != nil {
		return nil, nil, fmt.Errorf("read per-source counters: %w", err)
	}
	packets := make(map[netip.Addr]uint64, len(by))
	for a, c := range by {
		packets[a] = c.Packets
	}
	audit := n.policy.pol != nil && n.policy.pol.Mode == acl.ModeAudit
	segsOf := n.segmentsByAddr()
	lookup := func(a netip.Addr) ([]string, bool) { s, ok := segsOf[a]; return s, ok }
	d, au := n.denyTotals.Observe(packets, audit, lookup, n.segmentsOf(n.cfg.Tags))
	// Egress (the sender's side): per local identity and destination, the
	// local identity's segments as source.
	out, err := n.fw.EgressDenied()
	if err != nil {
		return nil, nil, fmt.Errorf("read egress counters: %w", err)
	}
	if n.egressTotals == nil {
		n.egressTotals = map[string]*metrics.DenyTotals{}
	}
	ws, _ := n.localWorkloads()
	localSegs := map[string][]string{"": n.segmentsOf(n.cfg.Tags)}
	for _, w := range ws {
		localSegs[w.Name] = n.segmentsOf(acl.WorkloadTags(n.cfg.Tags, w))
	}
	for name, byDst := range out {
		t := n.egressTotals[name]
		if t == nil {
			t = &metrics.DenyTotals{}
			n.egressTotals[name] = t
		}
		pk := make(map[netip.Addr]uint64, len(byDst))
		for a, c := range byDst {
			pk[a] = c.Packets
		}
		t.Observe(pk, audit, lookup, localSegs[name])
	}
	// Totals of local identities that went keep counting in the sums.
	for _, t := range n.egressTotals {
		ed, ea := t.Totals()
		for p, v := range ed {
			d[metrics.SegmentPair{Src: p.Dst, Dst: p.Src, Out: true}] += v
		}
		for p, v := range ea {
			au[metrics.SegmentPair{Src: p.Dst, Dst: p.Src, Out: true}] += v
		}
	}
	return d, au, nil
}

// segmentsByAddr maps every admitted peer's overlay addresses to its
// segments. Callers hold mu.
func (n *Node) segmentsByAddr() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, m := range n.view.admitted() {
		segs := n.memberSegments(m)
		for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
			if a.IsValid() {
				out[a] = segs
			}
		}
	}
	return out
}

// metricsSource adapts the node to metrics.Source.
type metricsSource struct{ n *Node }

func (s metricsSource) Status() api.Status { return s.n.Status() }
func (s metricsSource) DeniedBySegment() (map[metrics.SegmentPair]uint64, map[metrics.SegmentPair]uint64, error) {
	return s.n.observeDenied()
}
func (s metricsSource) RecordsRejected() map[string]uint64 {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return maps.Clone(s.n.track.counts)
}
func (s metricsSource) GossipMembers() int                 { return s.n.gossip.NumMembers() }
func (s metricsSource) PeerAPIRequests() map[string]uint64 { return s.n.peerAPIRequests() }
func (s metricsSource) QuarantineDropped() (uint64, error) { return s.n.fw.QuarantineDropped() }
func (s metricsSource) Flows() (map[metrics.FlowKind]uint64, int) {
	aggs := s.n.flows.agg.Len() + s.n.flows.allowed.Len()
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return maps.Clone(s.n.flowConns), aggs
}
