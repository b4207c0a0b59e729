// Package flows turns the NFLOG stream of the ACL chain (nft.LogGroup) into
// bounded flow aggregates, writes them as JSON lines for a SIEM (config key
// flow_log), and lists the current inbound flows from conntrack.
//
// The pieces are independent:
//
//   - NFLOG reads nfnetlink_log messages of one group and hands each logged
//     packet, decoded by ParsePayload, to a callback.
//   - Aggregator folds packets into api.Flow aggregates keyed by (source,
//     destination, protocol, port, verdict), bounded by a capacity, and fans
//     updates out to subscribers.
//   - Log writes flows as JSON lines; Throttle and Feed bound how often one
//     aggregate is written.
//   - InboundFlows lists conntrack entries addressed to this node.
//
// A typical wiring:
//
//	agg := flows.NewAggregator(4096, resolve, selfSegments, verdict)
//	r, _ := flows.OpenNFLOG(nft.LogGroup, log)
//	go r.Run(ctx, func(p flows.Packet) { agg.Add(p) })
//	updates, stop := agg.Subscribe(256)
//	go flows.Feed(ctx, flowLog, updates, time.Second, log)
package flows
