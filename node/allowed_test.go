package node

import (
	"net/netip"
	"testing"

	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/api"
)

// The kernel's counts of allowed traffic become allowed aggregates in
// Flows, their growth counted.
func TestAllowedFlowsFromKernelCounts(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	src := netip.MustParseAddr("100.80.9.9")
	r.fw.setObserved(nft.Observation{Src: src, Proto: 6, Port: 5432, Packets: 10, Bytes: 1000, Connections: 2})
	find := func() (api.Flow, bool) {
		for _, f := range r.n.Flows() {
			if f.Verdict == api.VerdictAllowed && f.SrcAddr == src.String() && f.Port == 5432 {
				return f, true
			}
		}
		return api.Flow{}, false
	}
	waitFor(t, "the allowed aggregate", func() bool { f, ok := find(); return ok && f.Connections == 2 })
	r.fw.setObserved(nft.Observation{Src: src, Proto: 6, Port: 5432, Packets: 30, Bytes: 5000, Connections: 5})
	waitFor(t, "its growth", func() bool {
		f, ok := find()
		return ok && f.Connections == 5 && f.Bytes == 5000 && f.Direction == api.DirectionIn
	})
}
