package metrics

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmesh/segmesh/api"
)

// PeerStates are the values of the state label of segmesh_peers, all
// present at every scrape (0 when no peer is in that state).
var PeerStates = []string{api.StateUp, api.StateSuspect, api.StateDead, api.StateLeft, api.StateUntrusted, api.StateQuarantined}

// configured reports whether a peer in state s is a WireGuard peer: only
// those have per-peer series.
func configured(s string) bool {
	return s == api.StateUp || s == api.StateSuspect || s == api.StateDead || s == api.StateQuarantined
}

var (
	descPeers = prometheus.NewDesc("segmesh_peers",
		"Peers known to this node, by state.", []string{"state"}, nil)
	descWorkloads = prometheus.NewDesc("segmesh_workloads",
		"This node's declared workloads, by state (active, missing, rejected).", []string{"state"}, nil)
	descHandshake = prometheus.NewDesc("segmesh_peer_last_handshake_timestamp_seconds",
		"Unix time of the last WireGuard handshake with a configured peer; 0 before the first.", []string{"peer", "public_key"}, nil)
	descRx = prometheus.NewDesc("segmesh_peer_receive_bytes_total",
		"Bytes received from a configured peer over WireGuard.", []string{"peer", "public_key"}, nil)
	descTx = prometheus.NewDesc("segmesh_peer_transmit_bytes_total",
		"Bytes sent to a configured peer over WireGuard.", []string{"peer", "public_key"}, nil)
	descPolicyVersion = prometheus.NewDesc("segmesh_policy_version",
		"Version of the active policy; 0 when there is none.", nil, nil)
	descPolicyInfo = prometheus.NewDesc("segmesh_policy_info",
		"Always 1; labels identify the active policy (empty hash: no policy).", []string{"hash", "mode"}, nil)
	descMembers = prometheus.NewDesc("segmesh_gossip_members",
		"Members of the gossip cluster as seen by this node.", nil, nil)
	descDenied = prometheus.NewDesc("segmesh_packets_denied_total",
		"Packets no rule allowed, dropped (enforce mode): direction in at the receiver, out at the sender (a local process's, rejected).", []string{"src_segment", "dst_segment", "direction"}, nil)
	descAudited = prometheus.NewDesc("segmesh_packets_audited_total",
		"Packets no rule allowed, accepted and logged in audit mode (direction in at the receiver, out at the sender).", []string{"src_segment", "dst_segment", "direction"}, nil)
	descFlows = prometheus.NewDesc("segmesh_flows_total",
		"Connections observed: allowed (counted in the kernel), denied and audited (logged attempts), by direction.", []string{"verdict", "direction"}, nil)
	descAggregates = prometheus.NewDesc("segmesh_flow_aggregates",
		"Flow aggregates held in memory (allowed, denied and audited).", nil, nil)
	descPeerAPI = prometheus.NewDesc("segmesh_peer_api_requests_total",
		"Peer API requests served, by HTTP status code; \"refused\": connections from sources that are no admitted peer, closed unanswered.", []string{"code"}, nil)
	descQuarantined = prometheus.NewDesc("segmesh_quarantined_nodes",
		"Nodes in quarantine (this node included when it is one).", nil, nil)
	descQuarantineDrops = prometheus.NewDesc("segmesh_packets_quarantined_total",
		"Mesh packets from or to quarantined nodes dropped at this node.", nil, nil)
	descRejected = prometheus.NewDesc("segmesh_records_rejected_total",
		"Gossip node records rejected, by reason.", []string{"reason"}, nil)
	descCertExpiry = prometheus.NewDesc("segmesh_certificate_expiry_timestamp_seconds",
		"CA mode: when a node's certificate expires (this node and every configured peer).", []string{"peer", "public_key"}, nil)
	descCertsExpiring = prometheus.NewDesc("segmesh_certificates_expiring",
		"CA mode: certificates (this node and configured peers) that expire within 30 days.", nil, nil)
)

// errorLogInterval is the least time between two logged scrape errors.
const errorLogInterval = time.Minute

// collector computes the state metrics from a Source at scrape time.
type collector struct {
	src Source
	log *slog.Logger

	mu         sync.Mutex
	lastLogged time.Time
	suppressed int
	now        func() time.Time
}

func newCollector(src Source, log *slog.Logger) *collector {
	return &collector{src: src, log: log, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descWorkloads, descHandshake, descRx, descTx, descPolicyVersion,
		descPolicyInfo, descMembers, descDenied, descAudited, descFlows, descAggregates, descPeerAPI, descQuarantined, descQuarantineDrops, descRejected, descCertExpiry, descCertsExpiring} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	c.collectPeers(ch, st.Peers)
	c.collectWorkloads(ch, st.Self.Workloads)
	c.send(ch, descPolicyVersion, prometheus.GaugeValue, float64(st.Policy.Version))
	c.send(ch, descPolicyInfo, prometheus.GaugeValue, 1, st.Policy.Hash, st.Policy.Mode)
	c.send(ch, descMembers, prometheus.GaugeValue, float64(c.src.GossipMembers()))

	if denied, audited, err := c.src.DeniedBySegment(); err != nil {
		c.logError("denied packet counts unavailable for this scrape", err)
	} else {
		for _, m := range []struct {
			d *prometheus.Desc
			v map[SegmentPair]uint64
		}{{descDenied, denied}, {descAudited, audited}} {
			for p, n := range m.v {
				dir := "in"
				if p.Out {
					dir = "out"
				}
				c.send(ch, m.d, prometheus.CounterValue, float64(n), p.Src, p.Dst, dir)
			}
		}
	}
	conns, aggs := c.src.Flows()
	for k, n := range conns {
		c.send(ch, descFlows, prometheus.CounterValue, float64(n), k.Verdict, k.Direction)
	}
	c.send(ch, descAggregates, prometheus.GaugeValue, float64(aggs))
	c.send(ch, descQuarantined, prometheus.GaugeValue, float64(len(st.Quarantined)))
	if n, err := c.src.QuarantineDropped(); err != nil {
		c.logError("quarantine drop counters unavailable for this scrape", err)
	} else {
		c.send(ch, descQuarantineDrops, prometheus.CounterValue, float64(n))
	}
	for code, n := range c.src.PeerAPIRequests() {
		c.send(ch, descPeerAPI, prometheus.CounterValue, float64(n), code)
	}
	for reason, n := range c.src.RecordsRejected() {
		c.send(ch, descRejected, prometheus.CounterValue, float64(n), reason)
	}
	c.collectCerts(ch, st)
}

// collectCerts exports certificate expiry (CA mode only: in trust: open no
// node has a certificate and nothing is sent).
func (c *collector) collectCerts(ch chan<- prometheus.Metric, st api.Status) {
	if st.Trust != "ca" {
		return
	}
	expiring := 0
	one := func(name, key, notAfter string, soon bool) {
		t, err := time.Parse(time.RFC3339, notAfter)
		if err != nil {
			return
		}
		c.send(ch, descCertExpiry, prometheus.GaugeValue, float64(t.Unix()), name, key)
		if soon {
			expiring++
		}
	}
	one(st.Self.Name, st.Self.PublicKey, st.Self.CertNotAfter, st.Self.CertExpiresSoon)
	for _, p := range st.Peers {
		if configured(p.State) {
			one(p.Name, p.PublicKey, p.CertNotAfter, p.CertExpiresSoon)
		}
	}
	c.send(ch, descCertsExpiring, prometheus.GaugeValue, float64(expiring))
}

func (c *collector) collectPeers(ch chan<- prometheus.Metric, peers []api.Peer) {
	byState := make(map[string]int, len(PeerStates))
	seen := make(map[string]bool, len(peers))
	for _, p := range peers {
		byState[p.State]++
		// One series per key: a key listed twice would fail the scrape.
		if !configured(p.State) || seen[p.PublicKey] {
			continue
		}
		seen[p.PublicKey] = true
		var hs float64
		if p.LastHandshake != nil {
			if t, err := time.Parse(time.RFC3339Nano, *p.LastHandshake); err == nil {
				hs = float64(t.UnixNano()) / 1e9
			}
		}
		c.send(ch, descHandshake, prometheus.GaugeValue, hs, p.Name, p.PublicKey)
		c.send(ch, descRx, prometheus.CounterValue, float64(max(p.RxBytes, 0)), p.Name, p.PublicKey)
		c.send(ch, descTx, prometheus.CounterValue, float64(max(p.TxBytes, 0)), p.Name, p.PublicKey)
	}
	for _, s := range PeerStates {
		c.send(ch, descPeers, prometheus.GaugeValue, float64(byState[s]), s)
	}
}

// collectWorkloads exports this node's workloads by state (every state,
// 0 included).
func (c *collector) collectWorkloads(ch chan<- prometheus.Metric, ws []api.Workload) {
	n := map[string]int{}
	for _, w := range ws {
		n[w.State]++
	}
	for _, s := range []string{api.WorkloadActive, api.WorkloadMissing, api.WorkloadRejected} {
		c.send(ch, descWorkloads, prometheus.GaugeValue, float64(n[s]), s)
	}
}

// send sends one metric. Label values come partly from remote gossip
// records (peer names): invalid UTF-8 is replaced rather than failing the
// scrape, and a metric that still cannot be built is logged and left out.
func (c *collector) send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	for i, l := range labels {
		labels[i] = strings.ToValidUTF8(l, "\uFFFD")
	}
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		c.logError("metric left out of this scrape", err)
		return
	}
	ch <- m
}

// logError logs err at most once per errorLogInterval, with the number of
// errors left unlogged since the last one.
func (c *collector) logError(msg string, err error) {
	c.mu.Lock()
	now := c.now()
	if !c.lastLogged.IsZero() && now.Sub(c.lastLogged) < errorLogInterval {
		c.suppressed++
		c.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.lastLogged, c.suppressed = now, 0
	c.mu.Unlock()
	c.log.Warn(msg, "err", err, "suppressed", suppressed)
}
