package api

import "time"

// Flow directions.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Flow verdicts.
const (
	VerdictDenied  = "denied"  // enforce mode: dropped
	VerdictAudited = "audited" // audit mode: would have been denied, accepted
	VerdictAllowed = "allowed" // a rule admitted it (observed in the kernel)
)

// Flow is one aggregate of denied or audited packets arriving over the mesh
// (direction in), or sent by a local process and denied or audited at
// this node (direction out): all packets from one source to one
// destination protocol/port with one verdict (and local workload). GET /v1/flows returns them newest first.
type Flow struct {
	SrcName     string   `json:"src_name"` // peer name; "" when the source is no known peer
	SrcKey      string   `json:"src_key"`
	SrcAddr     string   `json:"src_addr"`
	SrcSegments []string `json:"src_segments"`
	DstAddr     string   `json:"dst_addr"`
	DstSegments []string `json:"dst_segments"` // this node's segments
	Proto       string   `json:"proto"`        // tcp | udp | icmp | icmpv6 | a protocol number
	Port        uint16   `json:"port"`         // destination port; 0 for ICMP
	Verdict     string   `json:"verdict"`      // denied | audited
	// Direction is "in" (denied or audited at this node, the receiver) or
	// "out" (an egress denial of a local process, at this node, the
	// sender: Src is this node, Dst the peer, DstName/DstKey name it).
	Direction string `json:"direction"`
	DstName   string `json:"dst_name,omitempty"`
	DstKey    string `json:"dst_key,omitempty"`
	// Egress: the local workload ("" for the node's identity), its cgroup,
	// and where found the sending process and its owner.
	Workload  string    `json:"workload,omitempty"`
	Cgroup    string    `json:"cgroup,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Command   string    `json:"command,omitempty"`
	UID       *int      `json:"uid,omitempty"`
	Count     uint64    `json:"count"` // packets seen (NFLOG is rate-limited: a lower bound)
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// The contract's aggregate (DESIGN.md "Observed flows"): the peer on
	// the other end (the source in, the destination out) and its
	// segments; connections, packets and bytes. Allowed flows are counted
	// exactly in the kernel (bytes of the original direction); denied and
	// audited ones from the rate-limited log: connections and packets are
	// the logged attempts, bytes 0.
	Peer         string   `json:"peer"`
	PeerSegments []string `json:"peer_segments"`
	Connections  uint64   `json:"connections"`
	Packets      uint64   `json:"packets"`
	Bytes        uint64   `json:"bytes"`
	// Node is the observing node (set by segmesh flows, and --fleet).
	Node string `json:"node,omitempty"`
}

// SegmentView is one segment with its members (GET /v1/segments).
type SegmentView struct {
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector"`
	Members  []SegmentMember   `json:"members"`
}

// SegmentMember is a node in a segment; Self marks this node.
type SegmentMember struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Address   string `json:"address"`
	State     string `json:"state"` // peer state, "up" for self
	Self      bool   `json:"self,omitempty"`
	// Workload is set when the member is a node's workload (Name is then
	// NODE/WORKLOAD) that is in the segment while its node is not.
	Workload string `json:"workload,omitempty"`
}

// MatrixCell lists what segment From may reach on segment To ("*" rows and
// columns stand for any admitted node).
type MatrixCell struct {
	From  string   `json:"from"`
	To    string   `json:"to"`
	Ports []string `json:"ports"` // e.g. ["tcp/8080", "icmp"]; "any" for everything
	Rules []string `json:"rules"`
}

// PolicyView is GET /v1/policy/matrix: the active policy's identity and its
// compiled segment × segment matrix.
type PolicyView struct {
	Version  uint64       `json:"version"`
	Hash     string       `json:"hash"`
	Mode     string       `json:"mode"`
	Segments []string     `json:"segments"`
	Matrix   []MatrixCell `json:"matrix"`
}

// Event types of the stream.
const (
	EventStatus = "status" // Status is set: the whole status, sent first and on every change
	EventFlow   = "flow"   // Flow is set: a flow aggregate changed
)

// Event is one line of GET /v1/stream (NDJSON). The stream starts with a
// status event and then sends status events on changes (at most ~4/s, and at
// least every 2 s so rates stay fresh) and flow events as they happen.
type Event struct {
	Type   string  `json:"type"`
	Time   string  `json:"time"`
	Status *Status `json:"status,omitempty"`
	Flow   *Flow   `json:"flow,omitempty"`
}

// Suggestion is GET /v1/policy/suggest: rules that would allow the observed
// denied/audited flows, ready to paste under `rules:`, and the whole policy
// with them appended.
type Suggestion struct {
	Version uint64 `json:"policy_version"`
	Rules   string `json:"rules"`  // YAML list items
	Policy  string `json:"policy"` // the active policy with the rules appended ("" when none)
	Flows   int    `json:"flows"`  // observed flows considered
	// Denied is how many of them were denied (enforce mode, not audited):
	// the rules for those carry a comment "... from denied flows (enforce
	// mode): check they are wanted". LeftOut is how many denied flows were
	// not considered (audit_only).
	Denied      int      `json:"denied"`
	LeftOut     int      `json:"left_out"`
	Unplaceable []string `json:"unplaceable"`
	// Fleet mode: the nodes whose observations are in, and those that did
	// not answer (never nil).
	Nodes   []string  `json:"nodes,omitempty"`
	Missing []Missing `json:"missing"`
}

// DiffRequest is the body of POST /v1/policy/diff.
type DiffRequest struct {
	Content string `json:"content"`
	Fleet   bool   `json:"fleet,omitempty"` // check every node's observations
}

// PolicyDiff is the answer of POST /v1/policy/diff: rule changes from the
// active policy to the proposed one and the observed flows it would newly
// deny (live inbound connections and audited flows).
type PolicyDiff struct {
	Version     uint64    `json:"policy_version"`
	Text        string    `json:"text"`
	NewlyDenied []string  `json:"newly_denied"`
	Observed    int       `json:"observed"`
	Nodes       []string  `json:"nodes,omitempty"` // fleet mode: who answered
	Missing     []Missing `json:"missing"`
}
