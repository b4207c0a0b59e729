// Package acl owns segment policies: the policy schema, parsing and
// validation with positions, compiling membership + policy into the inbound
// allow state of one node (Enforced: identities, their ports, source address
// → identity; see identity.go), and explaining verdicts. The kernel backend
// that enforces Enforced is acl/nft, which imports acl; acl never imports
// it. It must not import mesh or gossip.
package acl

import "net/netip"

// Protocol numbers used in set elements (IANA).
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// Member is one node as the compiler sees it: its overlay addresses and its
// (declared or attested) tags.
type Member struct {
	Key   string // base64 WireGuard public key (identity)
	Name  string // human name
	Addr4 netip.Addr
	Addr6 netip.Addr
	Tags  map[string]string
	// Workloads are the node's workloads whose tags count (DESIGN.md
	// "Workloads"): each one's identity is Tags and its own tags. The
	// member is in every segment its node or any of its workloads is in.
	Workloads []Workload
}

// Workload is one workload of a member: a name unique on its node and the
// tags it adds to the node's (never redefining a node tag key).
type Workload struct {
	Name string
	Tags map[string]string
}

// WorkloadTags returns the tags of workload w of a node tagged node: the
// node's tags and w's.
func WorkloadTags(node map[string]string, w Workload) map[string]string {
	out := make(map[string]string, len(node)+len(w.Tags))
	for k, v := range node {
		out[k] = v
	}
	for k, v := range w.Tags {
		if _, set := node[k]; !set {
			out[k] = v
		}
	}
	return out
}

// PortElement allows traffic from Src with protocol Proto (TCP or UDP) to a
// destination port in [PortLo, PortHi].
type PortElement struct {
	Src            netip.Addr
	Proto          uint8
	PortLo, PortHi uint16
}

// Desired is the complete inbound allow state of one node. Elements are
// sorted and non-overlapping (ranges of the same source and protocol are
// merged), so they can be written to nftables interval sets as they are.
type Desired struct {
	Ports []PortElement // v4 and v6 sources mixed; the backend splits by family
	ICMP  []netip.Addr  // sources allowed ICMP/ICMPv6 echo requests
	Any   []netip.Addr  // sources allowed every protocol and port
	Local []netip.Addr  // this node's own overlay addresses (only-to-me)
	Audit bool          // mode: audit (would-be-denied traffic is accepted and logged)
}
