package metrics

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmesh/segmesh/api"
)

// fakeSource is a Source whose answers the test sets.
type fakeSource struct {
	mu              sync.Mutex
	status          api.Status
	denied, audited map[SegmentPair]uint64
	deniedErr       error
	rejected        map[string]uint64
	members         int
	flows           map[FlowKind]uint64
	peerAPI         map[string]uint64
	aggregates      int
}

func (f *fakeSource) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeSource) DeniedBySegment() (map[SegmentPair]uint64, map[SegmentPair]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.denied, f.audited, f.deniedErr
}

func (f *fakeSource) RecordsRejected() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

func (f *fakeSource) GossipMembers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members
}

func (f *fakeSource) Flows() (map[FlowKind]uint64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flows, f.aggregates
}

func (f *fakeSource) QuarantineDropped() (uint64, error) { return 9, nil }

func (f *fakeSource) PeerAPIRequests() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peerAPI
}

func ptr[T any](v T) *T { return &v }

// twoPeers: web-1 up with a handshake, db-1 dead before any handshake,
// old-1 left, bad-1 untrusted; a policy is active.
func twoPeers() *fakeSource {
	src := &fakeSource{
		status: api.Status{
			Self: api.Self{Workloads: []api.Workload{{Name: "api", State: api.WorkloadActive}, {Name: "cron", State: api.WorkloadMissing}}},
			Peers: []api.Peer{
				{Name: "web-1", PublicKey: "KEYweb1=", State: api.StateUp, RxBytes: 1500, TxBytes: 900,
					LastHandshake: ptr("2026-01-02T03:04:05.5Z")},
				{Name: "db-1", PublicKey: "KEYdb1=", State: api.StateDead, RxBytes: 10},
				{Name: "old-1", PublicKey: "KEYold1=", State: api.StateLeft, RxBytes: 99},
				{Name: "bad-1", PublicKey: "KEYbad1=", State: api.StateUntrusted, Reason: "address not derived from key"},
			},
			Policy: api.Policy{Version: 3, Hash: "sha256:abc", Mode: "enforce"},
		},
		denied:   map[SegmentPair]uint64{{"web", "db", false}: 7, {UnknownSource, "db", false}: 1},
		audited:  map[SegmentPair]uint64{},
		rejected: map[string]uint64{"bad_address": 2},
		members:  4,
	}
	src.flows = map[FlowKind]uint64{{Verdict: "allowed", Direction: "in"}: 5, {Verdict: "denied", Direction: "out"}: 2}
	src.aggregates = 3
	src.peerAPI = map[string]uint64{"200": 4, "refused": 1}
	return src
}

const (
	headPeers = `# HELP segmesh_peers Peers known to this node, by state.
# TYPE segmesh_peers gauge
`
	headHandshake = `# HELP segmesh_peer_last_handshake_timestamp_seconds Unix time of the last WireGuard handshake with a configured peer; 0 before the first.
# TYPE segmesh_peer_last_handshake_timestamp_seconds gauge
`
	headRx = `# HELP segmesh_peer_receive_bytes_total Bytes received from a configured peer over WireGuard.
# TYPE segmesh_peer_receive_bytes_total counter
`
	headTx = `# HELP segmesh_peer_transmit_bytes_total Bytes sent to a configured peer over WireGuard.
# TYPE segmesh_peer_transmit_bytes_total counter
`
	headPolicy = `# HELP segmesh_policy_info Always 1; labels identify the active policy (empty hash: no policy).
# TYPE segmesh_policy_info gauge
`
	headVersion = `# HELP segmesh_policy_version Version of the active policy; 0 when there is none.
# TYPE segmesh_policy_version gauge
`
	headMembers = `# HELP segmesh_gossip_members Members of the gossip cluster as seen by this node.
# TYPE segmesh_gossip_members gauge
`
	headDenied = `# HELP segmesh_packets_denied_total Packets no rule allowed, dropped (enforce mode): direction in at the receiver, out at the sender (a local process's, rejected).
# TYPE segmesh_packets_denied_total counter
`
	headAudited = `# HELP segmesh_packets_audited_total Packets no rule allowed, accepted and logged in audit mode (direction in at the receiver, out at the sender).
# TYPE segmesh_packets_audited_total counter
`
	headFlows = `# HELP segmesh_flows_total Connections observed: allowed (counted in the kernel), denied and audited (logged attempts), by direction.
# TYPE segmesh_flows_total counter
`
	headPeerAPI = `# HELP segmesh_peer_api_requests_total Peer API requests served, by HTTP status code; "refused": connections from sources that are no admitted peer, closed unanswered.
# TYPE segmesh_peer_api_requests_total counter
`
	headAggregates = `# HELP segmesh_flow_aggregates Flow aggregates held in memory (allowed, denied and audited).
# TYPE segmesh_flow_aggregates gauge
`
	headWorkloads = `# HELP segmesh_workloads This node's declared workloads, by state (active, missing, rejected).
# TYPE segmesh_workloads gauge
`
	headRejected = `# HELP segmesh_records_rejected_total Gossip node records rejected, by reason.
# TYPE segmesh_records_rejected_total counter
`
)

func TestCollectorOutput(t *testing.T) {
	src := twoPeers()
	c := newCollector(src, slog.New(slog.DiscardHandler))
	want := headPeers + `segmesh_peers{state="dead"} 1
segmesh_peers{state="left"} 1
segmesh_peers{state="quarantined"} 0
segmesh_peers{state="suspect"} 0
segmesh_peers{state="untrusted"} 1
segmesh_peers{state="up"} 1
` + headHandshake + `segmesh_peer_last_handshake_timestamp_seconds{peer="db-1",public_key="KEYdb1="} 0
segmesh_peer_last_handshake_timestamp_seconds{peer="web-1",public_key="KEYweb1="} 1.7673230455e+09
` + headRx + `segmesh_peer_receive_bytes_total{peer="db-1",public_key="KEYdb1="} 10
segmesh_peer_receive_bytes_total{peer="web-1",public_key="KEYweb1="} 1500
` + headTx + `segmesh_peer_transmit_bytes_total{peer="db-1",public_key="KEYdb1="} 0
segmesh_peer_transmit_bytes_total{peer="web-1",public_key="KEYweb1="} 900
` + headVersion + `segmesh_policy_version 3
` + headPolicy + `segmesh_policy_info{hash="sha256:abc",mode="enforce"} 1
` + headMembers + `segmesh_gossip_members 4
` + headDenied + `segmesh_packets_denied_total{direction="in",dst_segment="db",src_segment="unknown"} 1
segmesh_packets_denied_total{direction="in",dst_segment="db",src_segment="web"} 7
` + headFlows + `segmesh_flows_total{direction="in",verdict="allowed"} 5
segmesh_flows_total{direction="out",verdict="denied"} 2
` + headAggregates + `segmesh_flow_aggregates 3
` + headPeerAPI + `segmesh_peer_api_requests_total{code="200"} 4
segmesh_peer_api_requests_total{code="refused"} 1
# HELP segmesh_packets_quarantined_total Mesh packets from or to quarantined nodes dropped at this node.
# TYPE segmesh_packets_quarantined_total counter
segmesh_packets_quarantined_total 9
# HELP segmesh_quarantined_nodes Nodes in quarantine (this node included when it is one).
# TYPE segmesh_quarantined_nodes gauge
segmesh_quarantined_nodes 0
` + headRejected + `segmesh_records_rejected_total{reason="bad_address"} 2
` + headWorkloads + `segmesh_workloads{state="active"} 1
segmesh_workloads{state="missing"} 1
segmesh_workloads{state="rejected"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// The left and untrusted peers have no per-peer series at all.
	if n := testutil.CollectAndCount(c, "segmesh_peer_receive_bytes_total"); n != 2 {
		t.Errorf("%d receive series, want 2", n)
	}

	// web-1 departs (leaves gossip: no longer a WireGuard peer), db-1 is
	// removed altogether, a new peer appears; audited packets show up after
	// a switch to audit mode.
	src.mu.Lock()
	src.status.Peers = []api.Peer{
		{Name: "web-1", PublicKey: "KEYweb1=", State: api.StateLeft, RxBytes: 1500},
		{Name: "app-1", PublicKey: "KEYapp1=", State: api.StateSuspect, TxBytes: 5,
			LastHandshake: ptr("2026-01-02T03:04:06Z")},
	}
	src.status.Policy = api.Policy{Version: 4, Hash: "sha256:def", Mode: "audit"}
	src.audited = map[SegmentPair]uint64{{"web", "db", false}: 2}
	src.mu.Unlock()
	want = headPeers + `segmesh_peers{state="dead"} 0
segmesh_peers{state="left"} 1
segmesh_peers{state="quarantined"} 0
segmesh_peers{state="suspect"} 1
segmesh_peers{state="untrusted"} 0
segmesh_peers{state="up"} 0
` + headHandshake + `segmesh_peer_last_handshake_timestamp_seconds{peer="app-1",public_key="KEYapp1="} 1.767323046e+09
` + headRx + `segmesh_peer_receive_bytes_total{peer="app-1",public_key="KEYapp1="} 0
` + headTx + `segmesh_peer_transmit_bytes_total{peer="app-1",public_key="KEYapp1="} 5
` + headVersion + `segmesh_policy_version 4
` + headPolicy + `segmesh_policy_info{hash="sha256:def",mode="audit"} 1
` + headAudited + `segmesh_packets_audited_total{direction="in",dst_segment="db",src_segment="web"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"segmesh_peers", "segmesh_peer_last_handshake_timestamp_seconds", "segmesh_peer_receive_bytes_total",
		"segmesh_peer_transmit_bytes_total", "segmesh_policy_version", "segmesh_policy_info", "segmesh_packets_audited_total"); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorNoPolicyNoPeers(t *testing.T) {
	c := newCollector(&fakeSource{}, slog.New(slog.DiscardHandler))
	want := headPeers + `segmesh_peers{state="dead"} 0
segmesh_peers{state="left"} 0
segmesh_peers{state="quarantined"} 0
segmesh_peers{state="suspect"} 0
segmesh_peers{state="untrusted"} 0
segmesh_peers{state="up"} 0
` + headVersion + `segmesh_policy_version 0
` + headPolicy + `segmesh_policy_info{hash="",mode=""} 1
` + headMembers + `segmesh_gossip_members 0
` + headAggregates + `segmesh_flow_aggregates 0
# HELP segmesh_packets_quarantined_total Mesh packets from or to quarantined nodes dropped at this node.
# TYPE segmesh_packets_quarantined_total counter
segmesh_packets_quarantined_total 9
# HELP segmesh_quarantined_nodes Nodes in quarantine (this node included when it is one).
# TYPE segmesh_quarantined_nodes gauge
segmesh_quarantined_nodes 0
` + headWorkloads + `segmesh_workloads{state="active"} 0
segmesh_workloads{state="missing"} 0
segmesh_workloads{state="rejected"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorDeniedErrorOmitsSeriesAndLogsRateLimited(t *testing.T) {
	src := twoPeers()
	src.deniedErr = errors.New("netlink: permission denied")
	var logs bytes.Buffer
	c := newCollector(src, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }

	scrape := func() {
		t.Helper()
		if n := testutil.CollectAndCount(c, "segmesh_packets_denied_total", "segmesh_packets_audited_total"); n != 0 {
			t.Errorf("%d denied/audited series despite the error", n)
		}
		// The rest of the scrape is there.
		if n := testutil.CollectAndCount(c, "segmesh_peers", "segmesh_records_rejected_total"); n != 7 {
			t.Errorf("%d peers+rejected series, want 7", n)
		}
	}
	scrape()
	scrape()
	now = now.Add(30 * time.Second)
	scrape()
	if got := strings.Count(logs.String(), "denied packet counts unavailable"); got != 1 {
		t.Errorf("%d log lines within a minute, want 1:\n%s", got, logs.String())
	}
	now = now.Add(31 * time.Second)
	scrape()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	// Every scrape collects twice (CollectAndCount x2): 6 errors before,
	// the first logged, 5 suppressed until the next minute.
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=5") || !strings.Contains(lines[1], "permission denied") {
		t.Errorf("logs after a minute:\n%s", logs.String())
	}
}

func TestCollectorOddPeers(t *testing.T) {
	src := &fakeSource{status: api.Status{Peers: []api.Peer{
		// A name that is not UTF-8 (from a remote record) must not fail
		// the scrape; a key listed twice yields one series.
		{Name: "bad\xffname", PublicKey: "K1=", State: api.StateUp, RxBytes: 1},
		{Name: "dup", PublicKey: "K2=", State: api.StateUp, RxBytes: 2},
		{Name: "dup", PublicKey: "K2=", State: api.StateSuspect, RxBytes: 3},
		// An unparsable handshake time counts as none; negative bytes as 0.
		{Name: "x", PublicKey: "K3=", State: api.StateDead, LastHandshake: ptr("yesterday"), RxBytes: -5},
	}}}
	c := newCollector(src, slog.New(slog.DiscardHandler))
	want := headRx + `segmesh_peer_receive_bytes_total{peer="bad\ufffdname",public_key="K1="} 1
segmesh_peer_receive_bytes_total{peer="dup",public_key="K2="} 2
segmesh_peer_receive_bytes_total{peer="x",public_key="K3="} 0
` + headHandshake + `segmesh_peer_last_handshake_timestamp_seconds{peer="bad\ufffdname",public_key="K1="} 0
segmesh_peer_last_handshake_timestamp_seconds{peer="dup",public_key="K2="} 0
segmesh_peer_last_handshake_timestamp_seconds{peer="x",public_key="K3="} 0
`
	want = strings.ReplaceAll(want, `\ufffd`, "\uFFFD")
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"segmesh_peer_receive_bytes_total", "segmesh_peer_last_handshake_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryHistogramAndRuntimeCollectors(t *testing.T) {
	reg, rec := NewRegistry(twoPeers())
	rec.PolicyApplied(3 * time.Millisecond)
	rec.PolicyApplied(20 * time.Millisecond)
	var nilRec *Recorder
	nilRec.PolicyApplied(time.Second) // no panic
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() == "segmesh_policy_apply_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.022 || h.GetSampleSum() > 0.024 {
				t.Errorf("histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	for _, n := range []string{"segmesh_policy_apply_duration_seconds", "segmesh_peers", "go_goroutines",
		"process_start_time_seconds", "segmesh_packets_denied_total"} {
		if !names[n] {
			t.Errorf("registry lacks %s", n)
		}
	}
	// Registries are independent: the second has observed nothing.
	reg2, _ := NewRegistry(&fakeSource{})
	mfs, err = reg2.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "segmesh_policy_apply_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 0 {
				t.Errorf("second registry's histogram holds %d observations", n)
			}
		}
	}
}

func TestCollectorCertificateExpiry(t *testing.T) {
	src := &fakeSource{status: api.Status{Trust: "ca",
		Self: api.Self{Name: "db-1", PublicKey: "k1", CertNotAfter: "2026-12-01T00:00:00Z", CertExpiresSoon: true},
		Peers: []api.Peer{
			{Name: "web-1", PublicKey: "k2", State: "up", CertNotAfter: "2027-06-01T00:00:00Z"},
			{Name: "gone", PublicKey: "k3", State: "left", CertNotAfter: "2026-12-02T00:00:00Z", CertExpiresSoon: true},
		}}}
	c := newCollector(src, slog.New(slog.DiscardHandler))
	want := `# HELP segmesh_certificate_expiry_timestamp_seconds CA mode: when a node's certificate expires (this node and every configured peer).
# TYPE segmesh_certificate_expiry_timestamp_seconds gauge
segmesh_certificate_expiry_timestamp_seconds{peer="db-1",public_key="k1"} 1.7960832e+09
segmesh_certificate_expiry_timestamp_seconds{peer="web-1",public_key="k2"} 1.811808e+09
# HELP segmesh_certificates_expiring CA mode: certificates (this node and configured peers) that expire within 30 days.
# TYPE segmesh_certificates_expiring gauge
segmesh_certificates_expiring 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "segmesh_certificate_expiry_timestamp_seconds", "segmesh_certificates_expiring"); err != nil {
		t.Fatal(err)
	}
	src.status.Trust = "open"
	if n := testutil.CollectAndCount(c, "segmesh_certificates_expiring"); n != 0 {
		t.Fatalf("trust open exports no certificate metrics, got %d", n)
	}
}
