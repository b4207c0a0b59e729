package flows

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

func TestAllowedGrowthResetAndBound(t *testing.T) {
	peer := netip.MustParseAddr("100.80.0.2")
	self := netip.MustParseAddr("100.80.0.1")
	a := NewAllowed(2, func(x netip.Addr) (Peer, bool) {
		return Peer{Name: "web-1", Key: "K", Segments: []string{"web"}}, x == peer
	}, func(netip.Addr) (netip.Addr, []string) { return self, []string{"db"} })
	t0 := time.Unix(1000, 0)
	r := Reading{Src: peer, Proto: ProtoTCP, Port: 5432, Packets: 10, Bytes: 1000, Connections: 2}
	up, conns := a.Observe(t0, []Reading{r})
	if conns != 2 {
		t.Fatalf("connections added %d", conns)
	}
	if len(up) != 1 || up[0].Connections != 2 || up[0].Bytes != 1000 || up[0].Peer != "web-1" || up[0].Verdict != api.VerdictAllowed ||
		up[0].DstAddr != self.String() || up[0].PeerSegments[0] != "web" || up[0].DstSegments[0] != "db" {
		t.Fatalf("first reading: %+v", up)
	}
	// No growth: no update, last seen kept.
	if up, _ := a.Observe(t0.Add(time.Second), []Reading{r}); len(up) != 0 {
		t.Fatalf("unchanged reading updated %+v", up)
	}
	r.Packets, r.Bytes, r.Connections = 15, 1600, 3
	up, _ = a.Observe(t0.Add(2*time.Second), []Reading{r})
	if len(up) != 1 || up[0].Connections != 3 || up[0].Packets != 15 || up[0].Bytes != 1600 || !up[0].LastSeen.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("growth: %+v", up)
	}
	// The kernel's entry timed out and came back: counts from zero again.
	up, _ = a.Observe(t0.Add(3*time.Second), []Reading{{Src: peer, Proto: ProtoTCP, Port: 5432, Packets: 1, Bytes: 60, Connections: 1}})
	if up[0].Connections != 4 || up[0].Packets != 16 {
		t.Fatalf("after a reset: %+v", up)
	}
	// Bound: the least recently updated goes.
	a.Observe(t0.Add(4*time.Second), []Reading{{Src: peer, Proto: ProtoUDP, Port: 53, Packets: 1, Connections: 1}})
	a.Observe(t0.Add(5*time.Second), []Reading{{Src: peer, Proto: ProtoUDP, Port: 54, Packets: 1, Connections: 1}})
	s := a.Snapshot()
	if a.Len() != 2 || s[0].Port != 54 || s[1].Port != 53 {
		t.Fatalf("bounded snapshot %+v", s)
	}
}

// The aggregates of one peer share its details, follow a change of its
// segments, and the shared details go with the last aggregate of the peer.
func TestAllowedSharedPeerDetails(t *testing.T) {
	peer4, peer6 := netip.MustParseAddr("100.80.0.2"), netip.MustParseAddr("fd53::2")
	segs := []string{"web"}
	a := NewAllowed(3, func(x netip.Addr) (Peer, bool) {
		if x == peer4 || x == peer6 {
			return Peer{Name: "web-1", Key: "K", Segments: segs}, true
		}
		return Peer{}, false
	}, func(src netip.Addr) (netip.Addr, []string) {
		if src.Is6() {
			return netip.MustParseAddr("fd53::1"), []string{"db"}
		}
		return netip.MustParseAddr("100.80.0.1"), []string{"db"}
	})
	t0 := time.Unix(1000, 0)
	a.Observe(t0, []Reading{
		{Src: peer4, Proto: ProtoTCP, Port: 5432, Packets: 1, Connections: 1},
		{Src: peer6, Proto: ProtoTCP, Port: 5432, Packets: 1, Connections: 1},
	})
	if len(a.peers) != 1 || a.peers["K"].refs != 2 {
		t.Fatalf("one peer, two aggregates: %+v", a.peers)
	}
	segs = []string{"web", "edge"}
	up, _ := a.Observe(t0.Add(time.Second), []Reading{{Src: peer6, Proto: ProtoTCP, Port: 5432, Packets: 2, Connections: 2}})
	if len(up) != 1 || !slices.Equal(up[0].PeerSegments, segs) || up[0].DstAddr != "fd53::1" || up[0].DstSegments[0] != "db" {
		t.Fatalf("after the segments changed: %+v", up)
	}
	s := a.Snapshot()
	if len(s) != 2 || !slices.Equal(s[1].PeerSegments, []string{"web"}) || s[1].SrcAddr != peer4.String() {
		t.Fatalf("the aggregate not updated keeps what it showed: %+v", s)
	}
	// An unknown source, then two more that evict both of web-1's.
	a.Observe(t0.Add(2*time.Second), []Reading{{Src: netip.MustParseAddr("100.80.0.9"), Proto: ProtoUDP, Port: 53, Packets: 1}})
	a.Observe(t0.Add(3*time.Second), []Reading{
		{Src: netip.MustParseAddr("100.80.0.9"), Proto: ProtoUDP, Port: 54, Packets: 1},
		{Src: netip.MustParseAddr("100.80.0.9"), Proto: ProtoUDP, Port: 55, Packets: 1},
	})
	if _, ok := a.peers["K"]; ok || len(a.peers) != 1 || a.peers[""].refs != 3 {
		t.Fatalf("web-1's details outlived its aggregates: %+v", a.peers)
	}
	if s := a.Snapshot(); s[0].SrcName != "" || len(s[0].SrcSegments) != 0 || s[0].SrcSegments == nil {
		t.Fatalf("unknown source: %+v", s[0])
	}
}
