package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/flows"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/metrics"
)

// flowCapacity bounds the flow aggregates kept in memory.
const flowCapacity = 4096

// flowPipeline turns the ACL chain's NFLOG group into flow aggregates, the
// stream's flow events and the flow_log file.
type flowPipeline struct {
	agg     *flows.Aggregator
	allowed *flows.Allowed // allowed flows from the kernel's counts (observeAllowed)
	nflog   FlowReader     // nil when NFLOG is unavailable (flows then stay empty)
	file    *flows.Log     // nil without flow_log
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// openFlows prepares the pipeline; a missing NFLOG facility is logged, not
// fatal (enforcement does not depend on it), an unwritable flow_log is.
func (n *Node) openFlows() (*flowPipeline, error) {
	fp := &flowPipeline{agg: flows.NewAggregator(flowCapacity, n.resolvePeer, n.selfSegments, n.verdict)}
	fp.agg.SetLocalSegments(n.localSegments)
	fp.allowed = flows.NewAllowed(flows.DefaultAllowedCapacity, n.resolvePeer, n.selfAddrFor)
	if n.cfg.FlowLog != "" {
		f, err := flows.OpenLog(n.cfg.FlowLog)
		if err != nil {
			return nil, err
		}
		fp.file = f
	}
	nl, err := n.deps.OpenFlowReader(nft.LogGroup, n.log.With("sub", "flows"))
	if err != nil {
		n.log.Warn("flow visibility off: cannot read NFLOG", "group", nft.LogGroup, "err", err)
	} else {
		fp.nflog = nl
	}
	return fp, nil
}

// start runs the pipeline's goroutines until stop.
func (fp *flowPipeline) start(n *Node) {
	ctx, cancel := context.WithCancel(context.Background())
	fp.cancel = cancel
	if fp.nflog != nil {
		fp.wg.Add(1)
		go func() {
			defer fp.wg.Done()
			add := func(p flows.Packet) {
				if p.Out {
					n.describeSender(&p)
				}
				f := fp.agg.Add(p)
				n.countFlows(metrics.FlowKind{Verdict: f.Verdict, Direction: f.Direction}, 1)
			}
			if err := fp.nflog.Run(ctx, add); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Error("flow reader stopped", "err", err)
			}
		}()
	}
	fp.wg.Add(1)
	go func() {
		defer fp.wg.Done()
		n.observeAllowed(ctx, fp)
	}()
	if fp.file != nil {
		updates, unsubscribe := fp.agg.Subscribe(256)
		fp.wg.Add(1)
		go func() {
			defer fp.wg.Done()
			defer unsubscribe()
			flows.Feed(ctx, fp.file, updates, 0, n.log)
		}()
	}
}

// stop ends the goroutines and closes the reader and the file.
func (fp *flowPipeline) stop() error {
	if fp.cancel != nil {
		fp.cancel()
	}
	if fp.nflog != nil {
		_ = fp.nflog.Close()
	}
	fp.wg.Wait()
	if fp.file != nil {
		return fp.file.Close()
	}
	return nil
}

// reopen reopens flow_log after rotation (SIGHUP).
func (fp *flowPipeline) reopen() error {
	if fp.file == nil {
		return nil
	}
	return fp.file.Reopen()
}

// resolvePeer maps a source address to the admitted peer holding it.
func (n *Node) resolvePeer(a netip.Addr) (flows.Peer, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.byAddr[a]
	return p, ok
}

func (n *Node) selfSegments() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.segmentsOf(n.cfg.Tags)
}

// localSegments returns the segments of a local identity: an accepted
// workload's (node tags and its own), else the node's.
func (n *Node) localSegments(workload string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if workload != "" {
		ws, _ := n.localWorkloads()
		for _, w := range ws {
			if w.Name == workload {
				return n.segmentsOf(acl.WorkloadTags(n.cfg.Tags, w))
			}
		}
	}
	return n.segmentsOf(n.cfg.Tags)
}

// verdict is what the final rule does now: audit mode accepts.
func (n *Node) verdict() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.policy.pol != nil && n.policy.pol.Mode == acl.ModeAudit {
		return api.VerdictAudited
	}
	return api.VerdictDenied
}

// indexPeers rebuilds the address → peer index from the admitted peers of
// the current view, unless they and the policy are those it was last built
// from. Callers hold mu.
func (n *Node) indexPeers(admitted []acl.Member) {
	in := n.compileInputs(admitted)
	if in.same(n.indexed) {
		return
	}
	n.indexed = in
	idx := make(map[netip.Addr]flows.Peer, 2*len(admitted))
	for _, m := range admitted {
		p := flows.Peer{Name: m.Name, Key: m.Key, Segments: n.memberSegments(m)}
		for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
			if a.IsValid() {
				idx[a] = p
			}
		}
	}
	n.byAddr = idx
}

// subscribeFlows returns live flow updates for the stream.
func (n *Node) subscribeFlows() (<-chan api.Flow, func()) {
	return n.flows.agg.Subscribe(64)
}

// Flows returns the flow aggregates, newest first: denied and audited
// ones (in and out) and allowed ones (in).
func (n *Node) Flows() []api.Flow {
	out := append(n.flows.agg.Snapshot(), n.flows.allowed.Snapshot()...)
	slices.SortStableFunc(out, func(x, y api.Flow) int { return y.LastSeen.Compare(x.LastSeen) })
	return out
}

// countFlows adds observed connections to segmesh_flows_total.
func (n *Node) countFlows(k metrics.FlowKind, conns uint64) {
	if conns == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.flowConns == nil {
		n.flowConns = map[metrics.FlowKind]uint64{}
	}
	n.flowConns[k] += conns
}

// allowedInterval is how often the kernel's counts of allowed traffic
// are read into the aggregates.
const allowedInterval = time.Second

// observeAllowed reads the kernel's counts of allowed traffic every
// allowedInterval until ctx ends, and writes the grown aggregates to
// flow_log when flow_log_allowed is set.
func (n *Node) observeAllowed(ctx context.Context, fp *flowPipeline) {
	t := time.NewTicker(allowedInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			obs, err := n.fw.Observed()
			if err != nil {
				if !warned {
					n.log.Warn("allowed flows: cannot read the kernel's counts", "err", err)
					warned = true
				}
				continue
			}
			rs := make([]flows.Reading, len(obs))
			for i, o := range obs {
				rs[i] = flows.Reading{Src: o.Src, Proto: o.Proto, Port: o.Port, Packets: o.Packets, Bytes: o.Bytes, Connections: o.Connections}
			}
			grown, conns := fp.allowed.Observe(now, rs)
			n.countFlows(metrics.FlowKind{Verdict: api.VerdictAllowed, Direction: api.DirectionIn}, conns)
			n.mu.Lock()
			toLog := n.cfg.FlowLogAllowed
			n.mu.Unlock()
			if fp.file == nil || !toLog {
				continue
			}
			for _, f := range grown {
				if err := fp.file.Write(f); err != nil {
					n.log.Warn("flow_log: cannot write an allowed flow", "err", err)
					break
				}
			}
		}
	}
}

// selfAddrFor is this node's overlay address in src's family, and its
// segments.
func (n *Node) selfAddrFor(src netip.Addr) (netip.Addr, []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.claim.Address
	if src.Is6() {
		a = mesh.Address6(n.cfg.Network6, n.pub)
	}
	return a, n.segmentsOf(n.cfg.Tags)
}
