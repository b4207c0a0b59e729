package node

import (
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/gossip"
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
}

func newTracker() tracker {
	return tracker{firstSeen: map[string]seen{}, rejected: map[string]string{}, counts: map[string]uint64{}}
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
	if t.rejected[name] == reason {
		return false
	}
	t.rejected[name] = reason
	t.counts[reason]++
	return true
}
