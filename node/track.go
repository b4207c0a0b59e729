package node

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// establishedWindow: peers first seen within this long of our first contact
// with the mesh count as established members, whose announced claim time is
// taken as is. Peers that appear later are newcomers: their claim counts from
// when we first saw it, so a newcomer cannot take a live node's address by
// announcing an early claim time.
const establishedWindow = 5 * time.Second

type seen struct {
	addr4 netip.Addr
	at    time.Time
}

// tracker remembers what the node has observed across syncs.
type tracker struct {
	joinedAt  time.Time         // first sync that saw any other member
	firstSeen map[string]seen   // member name -> when its current IPv4 claim was first seen
	rejected  map[string]string // member name -> rejection reason last counted
	counts    map[string]uint64 // reason -> rejected records
	// configured: when each current WireGuard peer was first configured.
	configured map[mesh.Key]configuredPeer
	round      uint64 // keepalives calls, to find departed peers without a set
	// keepaliveDue is when the next peer waiting for its keepalive gets it
	// (zero: none waits), as of the last keepalives call.
	keepaliveDue time.Time
}

// configuredPeer is a WireGuard peer as keepalives tracks it.
type configuredPeer struct {
	first time.Time // first configured
	round uint64    // last keepalives call that listed it
}

func newTracker() tracker {
	return tracker{firstSeen: map[string]seen{}, rejected: map[string]string{}, counts: map[string]uint64{},
		configured: map[mesh.Key]configuredPeer{}}
}

// observe records the members of one sync.
func (t *tracker) observe(members []gossip.Member, now time.Time) {
	t.observeDecoded(members, now, func(m gossip.Member) (gossip.Record, bool) {
		rec, err := gossip.DecodeRecord(m.Meta)
		return rec, err == nil
	})
}

// observeDecoded is observe with the members' records decoded by decode
// (false: the record does not decode).
func (t *tracker) observeDecoded(members []gossip.Member, now time.Time, decode func(gossip.Member) (gossip.Record, bool)) {
	if t.joinedAt.IsZero() && len(members) > 0 {
		t.joinedAt = now
	}
	for _, m := range members {
		rec, ok := decode(m)
		if !ok {
			continue
		}
		if s, ok := t.firstSeen[m.Name]; !ok || s.addr4 != rec.Address4 {
			t.firstSeen[m.Name] = seen{addr4: rec.Address4, at: now}
		}
	}
}

// forget drops what is known about a member removed from the view.
func (t *tracker) forget(name string) {
	delete(t.firstSeen, name)
	delete(t.rejected, name)
}

// effective is the claim time this node grants a peer's record.
func (t *tracker) effective(name string, rec gossip.Record) time.Time {
	claimed := time.Unix(0, rec.Claimed)
	s, ok := t.firstSeen[name]
	if !ok || s.at.Sub(t.joinedAt) <= establishedWindow {
		return claimed
	}
	if s.at.After(claimed) {
		return s.at
	}
	return claimed
}

// countRejection counts a rejected record once per member and reason, and
// reports whether it is new (to be logged).
func (t *tracker) countRejection(name, reason string) bool {
	if t.rejected[name] == reason || reason == ReasonPending {
		return false
	}
	t.rejected[name] = reason
	t.counts[reason]++
	return true
}

// Handshake start of a new pair: the lower key initiates after
// initiatorDelay (time for gossip to tell the other side about us, or it
// would drop our initiation as from an unknown peer), the higher key after
// responderDelay, in case the first was lost anyway.
const (
	initiatorDelay = 250 * time.Millisecond
	responderDelay = time.Second
)

// keepalives gives each WireGuard peer its keepalive (see initiatorDelay):
// two simultaneous initiations would void each other and cost a 5-15 s
// retry. It reports whether a peer still waits for its keepalive, and sets
// keepaliveDue to when the first of them gets it.
func (t *tracker) keepalives(self mesh.Key, peers []mesh.Peer, now time.Time) (pending bool) {
	t.round++
	t.keepaliveDue = time.Time{}
	for i := range peers {
		k := peers[i].PublicKey
		c, ok := t.configured[k]
		if !ok {
			c.first = now
		}
		c.round = t.round
		t.configured[k] = c
		delay := responderDelay
		if bytes.Compare(self[:], k[:]) < 0 {
			delay = initiatorDelay
		}
		if now.Sub(c.first) >= delay {
			peers[i].Keepalive = mesh.Keepalive
			continue
		}
		pending = true
		if due := c.first.Add(delay); t.keepaliveDue.IsZero() || due.Before(t.keepaliveDue) {
			t.keepaliveDue = due
		}
	}
	for k, c := range t.configured {
		if c.round != t.round {
			delete(t.configured, k)
		}
	}
	return pending
}
