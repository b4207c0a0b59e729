package node

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// Rejection reasons; also the values of segmesh_records_rejected_total{reason}.
const (
	ReasonBadRecord        = "bad_record"
	ReasonNameKeyMismatch  = "name_key_mismatch"
	ReasonAddress6Mismatch = "address6_mismatch"
	ReasonAddress4Mismatch = "address4_mismatch"
	ReasonSelfKey          = "self_key"
	// ReasonAddressHeld: the record claims an IPv4 address that this node
	// remembers as held by another key (addrbook.go).
	ReasonAddressHeld = "address_held"
	// ReasonPending: the full record (over 512 bytes) has not arrived yet;
	// shown, not counted as a rejection.
	ReasonPending = "pending"
)

// verified is a record whose addresses were checked against its key (and,
// in CA mode, whose certificate was verified; its name and tags are then the
// certificate's).
type verified struct {
	rec   gossip.Record
	key   mesh.Key
	cert  *ca.Signed // CA mode
	fixed bool       // the certificate fixes the IPv4 address
}

// rejection says why a record was refused.
type rejection struct {
	reason string // one of the Reason* constants
	detail string // human explanation for logs and status
}

func (r *rejection) String() string { return r.reason + ": " + r.detail }

// verifyRecord checks a member's record: decodable, its key is the memberlist
// node name, its IPv6 is the hash of the key and its IPv4 one of the key's
// first mesh.MaxCandidates candidates (security invariant 1).
func verifyRecord(m gossip.Member, self mesh.Key, net4, net6 netip.Prefix, trust *trustState, now time.Time) (verified, *rejection) {
	v, rej, _, _ := checkRecord(m, self, net4, net6, trust, now)
	return v, rej
}

// checkRecord is verifyRecord that also reports whether the record decoded
// and the validity period of the certificate it carried (when one parsed):
// the outcome depends on now only through where now stands in that period.
func checkRecord(m gossip.Member, self mesh.Key, net4, net6 netip.Prefix, trust *trustState, now time.Time) (_ verified, _ *rejection, w certWindow, decoded bool) {
	rec, err := gossip.DecodeRecord(m.Meta)
	if err != nil {
		return verified{}, &rejection{ReasonBadRecord, err.Error()}, w, false
	}
	v, rej, w := checkDecoded(m, rec, self, net4, net6, trust, now)
	return v, rej, w, true
}

// checkDecoded is checkRecord once the record decoded.
func checkDecoded(m gossip.Member, rec gossip.Record, self mesh.Key, net4, net6 netip.Prefix, trust *trustState, now time.Time) (verified, *rejection, certWindow) {
	var w certWindow
	if rec.PublicKey != m.Name {
		return verified{rec: rec}, &rejection{ReasonNameKeyMismatch, fmt.Sprintf("record key %q is not the node name %q", rec.PublicKey, m.Name)}, w
	}
	key, err := mesh.ParseKey(rec.PublicKey)
	if err != nil {
		return verified{rec: rec}, &rejection{ReasonBadRecord, err.Error()}, w
	}
	if key == self {
		return verified{rec: rec}, &rejection{ReasonSelfKey, "record carries this node's own key"}, w
	}
	v := verified{rec: rec, key: key}
	if trust != nil {
		if len(rec.Cert) == 0 && rec.Ext != "" {
			return verified{rec: rec}, &rejection{ReasonPending, "waiting for the full record (certificate)"}, w
		}
		cert, cw, rej := trust.verifyPeerCert(rec.Cert, key, now)
		w = cw
		if rej != nil {
			return verified{rec: rec}, rej, w
		}
		v.cert, v.rec.Name, v.rec.Tags = cert, cert.Name, cert.Tags
		if cert.Address4.IsValid() {
			if rec.Address4 != cert.Address4 {
				return verified{rec: rec}, &rejection{ReasonAddress4Mismatch, fmt.Sprintf("claims %v, its certificate fixes %v", rec.Address4, cert.Address4)}, w
			}
			v.fixed = true
		}
	}
	if want := mesh.Address6(net6, key); rec.Address6 != want {
		return verified{rec: rec}, &rejection{ReasonAddress6Mismatch, fmt.Sprintf("claims %v, key yields %v", rec.Address6, want)}, w
	}
	if v.fixed {
		return v, nil, w
	}
	if !net4.Contains(rec.Address4) || mesh.CandidateIndex(net4, key, rec.Address4) < 0 {
		return verified{rec: rec}, &rejection{ReasonAddress4Mismatch, fmt.Sprintf("claims %v, not one of its key's %d candidates in %v", rec.Address4, mesh.MaxCandidates, net4)}, w
	}
	return v, nil, w
}
