package node

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// viewInput is everything computeView needs; it keeps computeView pure.
type viewInput struct {
	self          mesh.Key
	selfAddr4     netip.Addr
	selfEffective time.Time // our claim time as the clash rule sees it
	net4, net6    netip.Prefix
	members       []gossip.Member
	now           time.Time
	grace         time.Duration
	trust         *trustState // CA mode; nil: trust open
	// effective returns the claim time this node grants a peer's record.
	effective func(name string, rec gossip.Record) time.Time
	// verified holds the records verified in earlier syncs, begun for this
	// round; nil: every record is verified afresh.
	verified *verifyCache
}

// peerView is one peer as this node sees it.
type peerView struct {
	name       string // memberlist node name (base64 key)
	rec        gossip.Record
	key        mesh.Key
	endpoint   netip.AddrPort
	state      string // api.State*
	reason     string
	rejected   *rejection
	since      time.Time
	cert       *ca.Signed     // CA mode: its verified certificate
	fixed      bool           // its certificate fixes its IPv4 address
	configured bool           // a WireGuard peer
	allowed    []netip.Prefix // its overlay addresses WireGuard routes to it
}

// view is the outcome of one membership evaluation.
type view struct {
	peers     []peerView
	forget    []string            // members past their grace, to drop from gossip
	selfLoses bool                // a live peer wins our IPv4 address
	held      map[netip.Addr]bool // when selfLoses: IPv4 addresses held by live verified peers
}

// computeView verifies records, maps gossip states to peer states, applies
// dead_peer_grace and resolves IPv4 clashes. It has no side effects.
func computeView(in viewInput) view {
	if in.verified == nil {
		c := newVerifyCache()
		c.begin(trustGen{self: in.self, net4: in.net4, net6: in.net6, trust: in.trust, revs: in.trust.revsVersion()})
		in.verified = &c
	}
	v := view{peers: make([]peerView, 0, len(in.members))}
	for _, m := range in.members {
		pv, keep := memberToPeer(in, m)
		if !keep {
			v.forget = append(v.forget, m.Name)
			continue
		}
		v.peers = append(v.peers, pv)
	}
	resolveClashes(in, &v)
	sort.Slice(v.peers, func(i, j int) bool {
		if v.peers[i].rec.Name != v.peers[j].rec.Name {
			return v.peers[i].rec.Name < v.peers[j].rec.Name
		}
		return v.peers[i].name < v.peers[j].name
	})
	return v
}

// memberToPeer maps one member; keep is false once it is past its grace.
func memberToPeer(in viewInput, m gossip.Member) (peerView, bool) {
	pv := peerView{name: m.Name, since: m.StateSince}
	gone := m.State == gossip.StateDead || m.State == gossip.StateLeft
	if gone && in.now.Sub(m.StateSince) > in.grace {
		return pv, false
	}
	e := in.verified.lookup(m, in.now)
	vr, rej := e.vr, e.rej
	pv.rec = vr.rec
	if pv.rec.Name == "" {
		pv.rec.Name = m.Name
	}
	if rej != nil {
		pv.state, pv.reason, pv.rejected = api.StateUntrusted, rej.String(), rej
		return pv, true
	}
	pv.key, pv.cert, pv.fixed = vr.key, vr.cert, vr.fixed
	pv.endpoint = netip.AddrPortFrom(m.Addr.Addr(), uint16(vr.rec.ListenPort))
	switch m.State {
	case gossip.StateAlive:
		pv.state, pv.configured = api.StateUp, true
	case gossip.StateSuspect:
		pv.state, pv.configured = api.StateSuspect, true
	case gossip.StateDead:
		pv.state, pv.configured = api.StateDead, true // keeps access within dead_peer_grace
	default:
		pv.state = api.StateLeft // leave: access removed at once
	}
	if pv.configured {
		pv.allowed = e.allowed // IPv4 and IPv6; shared, never written to
	}
	return pv, true
}

// resolveClashes gives each contested IPv4 address to its earliest claimant
// (ties: lower key); losers keep only their IPv6 until they renumber.
func resolveClashes(in viewInput, v *view) {
	self := claimant{key: in.self, effective: in.selfEffective}
	best := make(map[netip.Addr]claimant, len(v.peers)+1)
	best[in.selfAddr4] = self
	for _, p := range v.peers {
		if !p.configured {
			continue
		}
		c := claimant{key: p.key, effective: in.effective(p.name, p.rec)}
		if p.fixed {
			c.effective = time.Time{} // a certificate-fixed address is authoritative
		}
		if cur, ok := best[p.rec.Address4]; !ok || c.wins(cur) {
			best[p.rec.Address4] = c
		}
	}
	if best[in.selfAddr4].key != in.self {
		v.selfLoses = true
		v.held = make(map[netip.Addr]bool, len(best)) // for renumbering, the only reader
	}
	for i := range v.peers {
		p := &v.peers[i]
		if !p.configured {
			continue
		}
		w := best[p.rec.Address4]
		if w.key == p.key {
			if v.held != nil {
				v.held[p.rec.Address4] = true
			}
			continue
		}
		p.reason = fmt.Sprintf("address conflict: %v is held by an earlier claim", p.rec.Address4)
		p.allowed = []netip.Prefix{netip.PrefixFrom(p.rec.Address6, 128)}
	}
}

// wgPeers returns the WireGuard peers of a view.
func (v view) wgPeers() []mesh.Peer {
	count := 0
	for i := range v.peers {
		if v.peers[i].configured {
			count++
		}
	}
	out := make([]mesh.Peer, 0, count)
	for _, p := range v.peers {
		if p.configured {
			out = append(out, mesh.Peer{PublicKey: p.key, Endpoint: p.endpoint, AllowedIPs: p.allowed})
		}
	}
	return out
}
