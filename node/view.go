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
	// book is this node's address memory (nil: none); hintsCount is whether
	// other nodes' memory may still move this node off its address (a claim
	// of this run, within hintWindow of joining).
	book       *addrBook
	hintsCount bool
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
	holds4     bool           // it won its IPv4 address
	claimed    time.Time      // its claim time as the clash rule saw it (when holds4)
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
// (ties: lower key); losers keep only their IPv6 until they renumber. An
// address this node remembers a holder of stays the holder's, present or
// absent: another key claiming it is refused (security invariant 1).
func resolveClashes(in viewInput, v *view) {
	self := claimant{key: in.self, effective: in.selfEffective}
	best := make(map[netip.Addr]claimant, len(v.peers)+1)
	best[in.selfAddr4] = self
	for i := range v.peers {
		p := &v.peers[i]
		if !p.configured {
			continue
		}
		c := claimant{key: p.key, effective: in.effective(p.name, p.rec)}
		if h, ok := in.book.holderOf(p.rec.Address4, in.now); ok && h.key == p.key && h.claimed.Before(c.effective) {
			c.effective = h.claimed // a returning holder keeps its remembered claim
		}
		if p.fixed {
			c.effective = time.Time{} // a certificate-fixed address is authoritative
		}
		p.claimed = c.effective
		if cur, ok := best[p.rec.Address4]; !ok || c.wins(cur) {
			best[p.rec.Address4] = c
		}
	}
	held := heldAddresses(in, v, best)
	if h, ok := held[in.selfAddr4]; ok && h.key != in.self {
		v.selfLoses = true
	} else if !ok && best[in.selfAddr4].key != in.self {
		v.selfLoses = true
	}
	if !v.selfLoses && in.hintsCount && in.book.hintedForOther(in.selfAddr4, in.self, in.now) {
		v.selfLoses = true // a newcomer moves off an address another node remembers
	}
	if v.selfLoses {
		v.held = in.book.heldByOthers(in.self, in.now) // for renumbering, the only reader
	}
	for i := range v.peers {
		p := &v.peers[i]
		if !p.configured {
			continue
		}
		h, remembered := held[p.rec.Address4]
		if remembered && h.key != p.key {
			p.rejected = &rejection{ReasonAddressHeld, fmt.Sprintf("%v is held by %s (%s), last seen %s; `segmesh node remove %s` frees it",
				p.rec.Address4, h.name, h.key, h.lastSeen.UTC().Format(time.RFC3339), h.key)}
			p.state, p.reason, p.configured, p.allowed = api.StateUntrusted, p.rejected.String(), false, nil
			continue
		}
		if remembered || best[p.rec.Address4].key == p.key {
			p.holds4 = true
			if v.held != nil {
				v.held[p.rec.Address4] = true
			}
			continue
		}
		p.reason = fmt.Sprintf("address conflict: %v is held by an earlier claim", p.rec.Address4)
		p.allowed = []netip.Prefix{netip.PrefixFrom(p.rec.Address6, 128)}
	}
}

// heldAddresses returns the claimed addresses this node remembers a holder
// of, with that holder: it keeps them against every other claim, live or
// not, except a holder seen claiming another address (it moved) and a
// certificate-fixed claim (authoritative).
func heldAddresses(in viewInput, v *view, best map[netip.Addr]claimant) map[netip.Addr]holding {
	out := map[netip.Addr]holding{}
	if in.book == nil {
		return out
	}
	at := make(map[mesh.Key]netip.Addr, len(v.peers)+1) // live claimants' addresses
	at[in.self] = in.selfAddr4
	for i := range v.peers {
		if v.peers[i].configured {
			at[v.peers[i].key] = v.peers[i].rec.Address4
		}
	}
	for a, c := range best {
		h, ok := in.book.holderOf(a, in.now)
		if !ok {
			continue
		}
		if cur, live := at[h.key]; live && cur != a {
			continue // moved
		}
		if c.effective.IsZero() && c.key != h.key {
			continue // a certificate fixes it to another key
		}
		out[a] = h
	}
	return out
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
