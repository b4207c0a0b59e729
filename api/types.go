// Package api holds the control API's wire types and its client. The CLI and
// the terminal UI use it; it imports no daemon internals.
package api

// Status is the body of GET /v1/status and of `segmesh status --json`.
type Status struct {
	Self   Self   `json:"self"`
	Peers  []Peer `json:"peers"`
	Policy Policy `json:"policy"`
	Trust  string `json:"trust"`
	// Quarantined lists the nodes in quarantine (never nil; DESIGN.md
	// "Quarantine").
	Quarantined []Quarantined `json:"quarantined"`
	// Extensions beyond the contract minimum.
	Interface string `json:"interface"`
	Backend   string `json:"backend"`
	Members   int    `json:"gossip_members"`
}

// Self describes the local node.
type Self struct {
	Name      string            `json:"name"`
	PublicKey string            `json:"public_key"`
	Address   string            `json:"address"`
	Address6  string            `json:"address6"`
	Endpoint  string            `json:"endpoint"`
	Tags      map[string]string `json:"tags"`
	Segments  []string          `json:"segments"`
	Workloads []Workload        `json:"workloads"`
	// Extensions (CA mode): certificate validity end, and whether it ends
	// within 30 days.
	CertNotAfter    string `json:"cert_not_after,omitempty"`
	CertExpiresSoon bool   `json:"cert_expires_soon,omitempty"`
}

// Peer states.
const (
	StateUp        = "up"
	StateSuspect   = "suspect"
	StateDead      = "dead"
	StateLeft      = "left"
	StateUntrusted = "untrusted"
)

// Peer describes one other node.
type Peer struct {
	Name          string            `json:"name"`
	PublicKey     string            `json:"public_key"`
	Address       string            `json:"address"`
	Address6      string            `json:"address6"`
	Endpoint      string            `json:"endpoint"`
	Tags          map[string]string `json:"tags"`
	Segments      []string          `json:"segments"`
	Workloads     []Workload        `json:"workloads"`
	State         string            `json:"state"`
	Reason        string            `json:"reason"`
	LastHandshake *string           `json:"last_handshake"` // RFC3339 or null
	RxBytes       int64             `json:"rx_bytes"`
	TxBytes       int64             `json:"tx_bytes"`
	// Extensions: bytes per second over the last sampling interval (~1 s).
	RxRate float64 `json:"rx_rate"`
	TxRate float64 `json:"tx_rate"`
	// CA mode: the peer's certificate validity end, and whether it ends
	// within 30 days.
	CertNotAfter    string `json:"cert_not_after,omitempty"`
	CertExpiresSoon bool   `json:"cert_expires_soon,omitempty"`
}

// Workload states.
const (
	WorkloadActive   = "active"
	WorkloadMissing  = "missing"
	WorkloadRejected = "rejected"
)

// Workload is one workload of a node (DESIGN.md "Workloads"): its own tags,
// the segments its identity (node tags and its own) is in, its state and
// why; Cgroup only for the local node's workloads.
type Workload struct {
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags"`
	Segments []string          `json:"segments"`
	State    string            `json:"state"`
	Reason   string            `json:"reason"`
	Cgroup   string            `json:"cgroup,omitempty"`
}

// Policy is the active policy's identity; version 0 means none.
type Policy struct {
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
	Mode    string `json:"mode"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// PolicyDocument is GET /v1/policy: the active policy with who applied it
// and when; Version 0 means no policy.
type PolicyDocument struct {
	Version   uint64 `json:"version"`
	Hash      string `json:"hash"`
	Mode      string `json:"mode"`
	AppliedBy string `json:"applied_by"`
	Time      string `json:"time"`
	Content   string `json:"content"`
}

// ApplyRequest is the body of POST /v1/policy.
type ApplyRequest struct {
	Content       string  `json:"content"`
	ExpectVersion *uint64 `json:"expect_version,omitempty"`
	// CA mode: the version the signature covers and the signature itself
	// (`policy sign` output or `policy apply --sign-key`).
	Version   uint64 `json:"version,omitempty"`
	Signature string `json:"signature,omitempty"`
}

// Explanation is GET /v1/policy/explain.
type Explanation struct {
	Verdict      string   `json:"verdict"` // allow | deny
	From         string   `json:"from"`
	To           string   `json:"to"`
	FromSegments []string `json:"from_segments"`
	ToSegments   []string `json:"to_segments"`
	Port         string   `json:"port"`
	Rules        []string `json:"rules"`
	Mode         string   `json:"mode"`
	Version      uint64   `json:"policy_version"`
	// Service is the service the port was given as ("" for a port).
	Service string `json:"service,omitempty"`
	// Considered is every rule of the policy in file order with how its
	// from, to and ports fared.
	Considered []ExplainedRule `json:"considered"`
	// FromWorkload and ToWorkload name the workload of From or To when it
	// was given as NODE/WORKLOAD: the workload's identity (its node's tags
	// and its own) was explained, unless a note says it is rejected.
	FromWorkload string `json:"from_workload,omitempty"`
	ToWorkload   string `json:"to_workload,omitempty"`
	// Notes say how From or To was taken when that is not plain, e.g. a
	// rejected workload explained with its node's identity.
	Notes []string `json:"notes,omitempty"`
}

// ExplainedRule is one rule as policy explain evaluated it.
type ExplainedRule struct {
	Rule      string             `json:"rule"`
	Allow     bool               `json:"allow"`
	From      []ExplainedSegment `json:"from"`
	FromMatch bool               `json:"from_match"`
	To        []ExplainedSegment `json:"to"`
	ToMatch   bool               `json:"to_match"`
	Ports     []string           `json:"ports"`                // the rule's ports list as written
	PortMatch string             `json:"port_match,omitempty"` // the entry that matches the flow
	Service   string             `json:"service,omitempty"`    // the service port_match names
}

// ExplainedSegment is one segment of a rule's from or to list evaluated on
// the source or destination node ("*" matches any node and has no terms).
type ExplainedSegment struct {
	Segment string          `json:"segment"`
	Match   bool            `json:"match"`
	Terms   []ExplainedTerm `json:"terms,omitempty"`
}

// ExplainedTerm is one selector term evaluated on a node.
type ExplainedTerm struct {
	Term    string `json:"term"` // as written, e.g. "env: [prod, staging]"
	Match   bool   `json:"match"`
	Tag     string `json:"tag"`
	Present bool   `json:"present"`         // whether the node has the tag
	Value   string `json:"value,omitempty"` // its value there
}

// RemoveRequest is the body of POST /v1/nodes/remove.
type RemoveRequest struct {
	Node string `json:"node"` // name, public key or overlay address
}

// RemoveResult names the removed node.
type RemoveResult struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	// Address is the IPv4 address this node remembered the node holding;
	// AddressFreed says whether the removal freed it (a holder seen alive
	// within dead_peer_grace keeps it: try again after that).
	Address      string `json:"address,omitempty"`
	AddressFreed bool   `json:"address_freed"`
}
