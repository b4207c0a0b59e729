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
	configured map[mesh.Key]time.Time
}

func newTracker() tracker {
	return tracker{firstSeen: map[string]seen{}, rejected: map[string]string{}, counts: map[string]uint64{},
		configured: map[mesh.Key]time.Time{}}
}

// observe records the members of one sync.
func (t *tracker) observe(members []gossip.Member, now time.Time) {
	if t.joinedAt.IsZero() && len(members) > 0 {
		t.joinedAt = now
	}
	for _, m := range members {
		rec, err := gossip.DecodeRecord(m.Meta)
		if err != nil {
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
// retry. It reports whether a peer still waits for its keepalive.
func (t *tracker) keepalives(self mesh.Key, peers []mesh.Peer, now time.Time) (pending bool) {
	live := make(map[mesh.Key]bool, len(peers))
	for i := range peers {
		k := peers[i].PublicKey
		live[k] = true
		first, ok := t.configured[k]
		if !ok {
			t.configured[k], first = now, now
		}
		delay := responderDelay
		if bytes.Compare(self[:], k[:]) < 0 {
			delay = initiatorDelay
		}
		if now.Sub(first) >= delay {
			peers[i].Keepalive = mesh.Keepalive
		} else {
			pending = true
		}
	}
	for k := range t.configured {
		if !live[k] {
			delete(t.configured, k)
		}
	}
	return pending
}
