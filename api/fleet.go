package api

import (
	"context"
	"net/http"
)

// DefaultPeerAPIPort is the peer API's TCP port (config peer_api_port).
const DefaultPeerAPIPort = 9477

// Missing is a node that did not answer a fleet request, and why
// (DESIGN.md "Observed flows": never silently partial).
type Missing struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// PeerInfo is the peer API's GET /v1/info: who this node is and which
// policy it enforces.
type PeerInfo struct {
	Name          string   `json:"name"`
	PublicKey     string   `json:"public_key"`
	Segments      []string `json:"segments"`
	Workloads     []string `json:"workloads"`
	PolicyVersion uint64   `json:"policy_version"`
	PolicyHash    string   `json:"policy_hash"`
	Mode          string   `json:"mode"`
}

// Observation verdicts beyond the flows' (Verdict* in observe.go): a live
// connection conntrack holds, admitted by the rules.
const VerdictLive = "live"

// Observation is one observed flow in the policy's terms, as suggest and
// diff use it (the peer API's GET /v1/observed): source and destination
// node, their tags (nil: not known, use the segments) and segments, the
// destination protocol and port, a count and the verdict (allowed,
// denied, audited, or live for a connection conntrack holds now).
type Observation struct {
	SrcName     string            `json:"src_name"`
	SrcSegments []string          `json:"src_segments"`
	SrcTags     map[string]string `json:"src_tags,omitempty"`
	DstName     string            `json:"dst_name"`
	DstSegments []string          `json:"dst_segments"`
	DstTags     map[string]string `json:"dst_tags,omitempty"`
	Proto       string            `json:"proto"`
	Port        uint16            `json:"port"`
	Count       uint64            `json:"count"`
	Verdict     string            `json:"verdict"`
	Direction   string            `json:"direction"` // in: observed at the receiver (Dst); out: at the sender
}

// Observed is the peer API's GET /v1/observed.
type Observed struct {
	Node         string        `json:"node"`
	Observations []Observation `json:"observations"`
}

// FleetFlows is the control API's GET /v1/fleet/flows: this node's flows
// and every up peer's (each with Node set), and the nodes that did not
// answer.
type FleetFlows struct {
	Flows   []Flow    `json:"flows"`
	Missing []Missing `json:"missing"`
}

// FleetFlows fetches every node's flows through the local daemon, which
// asks each peer's peer API over the mesh (2 s each).
func (c *Client) FleetFlows(ctx context.Context) (*FleetFlows, error) {
	var f FleetFlows
	if err := c.do(ctx, http.MethodGet, "/v1/fleet/flows", nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}
