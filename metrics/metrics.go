// Package metrics exposes the daemon's Prometheus metrics (DESIGN.md
// "Metrics", contract) from a per-instance registry and serves them over
// HTTP with /healthz and /readyz.
//
// State metrics (peers, policy, gossip, denied/audited packets, rejected
// records) are computed at scrape time by a collector that reads a Source,
// so a peer that is gone has no series at the next scrape. Event-time
// metrics (policy apply durations) are observed through a Recorder.
package metrics

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmesh/segmesh/api"
)

// Source is what the daemon exposes to the collector; every call is cheap
// and safe for concurrent use. Each scrape calls each method once.
type Source interface {
	// Status is the node's status: its peers (name, public key, state,
	// rx/tx bytes, last handshake) and its policy (version, hash, mode).
	Status() api.Status
	// DeniedBySegment returns the packets denied (enforce mode) and
	// audited (audit mode) on the mesh interface, by source and
	// destination segment, as monotonic totals (see DenyTotals). On error
	// the scrape leaves these series out and the error is logged.
	DeniedBySegment() (denied, audited map[SegmentPair]uint64, err error)
	// RecordsRejected returns how many gossip records were rejected, by
	// reason (monotonic).
	RecordsRejected() map[string]uint64
	// GossipMembers is the number of members of the gossip cluster.
	GossipMembers() int
	// Flows returns the connections observed by verdict and direction
	// (monotonic) and the flow aggregates held now.
	Flows() (connections map[FlowKind]uint64, aggregates int)
	// PeerAPIRequests returns the peer API's requests by outcome: an HTTP
	// status code, or "refused" for a connection from a source that is no
	// admitted peer (monotonic; nil when the peer API is off).
	PeerAPIRequests() map[string]uint64
	// QuarantineDropped returns the packets the quarantine dropped
	// (monotonic).
	QuarantineDropped() (uint64, error)
}

// FlowKind labels observed connections.
type FlowKind struct{ Verdict, Direction string }

// SegmentPair labels packets by the source's and the destination's
// segments, each a comma-separated sorted list, or NoSegment or
// UnknownSource (see BySegment).
type SegmentPair struct {
	Src, Dst string
	// Out marks egress denials (label direction="out"); ingress: "in".
	Out bool
}

// Option configures NewRegistry.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger sets the logger of the collector (scrape-time errors, rate
// limited). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// NewRegistry returns a new registry holding the segmesh collector (reading
// src at every scrape), the policy apply histogram of the returned Recorder,
// and the Go runtime and process collectors. Every call makes independent
// metrics: several daemons in one process (tests) do not share series.
func NewRegistry(src Source, opts ...Option) (*prometheus.Registry, *Recorder) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	rec := &Recorder{apply: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "segmesh_policy_apply_duration_seconds",
		Help: "Time to apply a policy or membership change to this node's nftables sets (compile and one atomic batch).",
		// 1 ms to about 16 s.
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})}
	reg.MustRegister(
		newCollector(src, o.log.With("component", "metrics")),
		rec.apply,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg, rec
}

// Recorder observes event-time metrics. Its methods are safe for concurrent
// use; a nil *Recorder ignores every call.
type Recorder struct {
	apply prometheus.Histogram
}

// PolicyApplied records how long applying a policy (or membership) change
// took (segmesh_policy_apply_duration_seconds).
func (r *Recorder) PolicyApplied(d time.Duration) {
	if r == nil {
		return
	}
	r.apply.Observe(d.Seconds())
}
