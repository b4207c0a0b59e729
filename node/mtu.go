package node

import (
	"net/netip"
	"slices"
	"time"

	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/mesh"
)

// mtu auto keeps the interface MTU at the lowest underlay path minus the
// WireGuard overhead: min(MTU of the advertise link, path MTU to every
// configured peer's endpoint) - 80, never below 1280 (below that it warns
// and keeps 1280). The path MTU is what the routing table says (a route's
// `mtu`, a path MTU the kernel learned, else the output link's MTU).
//
// The sync loop recomputes it before each WireGuard reconcile when the set
// of peer endpoints changed, and at least every mtuRecheck (routes and
// learned path MTUs change without membership changes). Lowering is
// immediate, before WireGuard gets the new peer, so a peer on a smaller
// path works from its first packet. Raising (the peer that lowered it left,
// or its path grew) waits until the higher value has been the target for
// mtuRaiseHold, then goes to the lowest of the remaining paths: a peer that
// restarts or flaps does not flap the MTU. A number in `mtu:` is never
// changed.
const (
	mtuRecheck   = 5 * time.Second
	mtuRaiseHold = 10 * time.Second
)

// mtuTuner is what mtu auto needs from the WireGuard device (part of Mesh).
type mtuTuner interface {
	PathMTU(dst netip.Addr) (int, error)
	SetMTU(mtu int) error
}

// mtuPath is one underlay path bounding the interface MTU.
type mtuPath struct {
	name, key string     // the peer's name and public key; empty for the advertise link
	addr      netip.Addr // peer endpoint or advertise address
	mtu       int        // underlay MTU of the path
}

// autoMTU is the state of mtu auto. Only the sync loop touches it (and New
// before the loop starts).
type autoMTU struct {
	on          bool
	advertise   netip.Addr
	current     int          // the interface MTU as last set
	endpoints   []netip.Addr // sorted peer endpoint addresses at the last check
	checked     time.Time    // last check
	higherSince time.Time    // since when the target exceeds current; zero: it doesn't
	warned      mtuPath      // the path last warned about as below the floor
}

// startMTU is the interface MTU at start under mtu auto: the advertise
// link's MTU minus the overhead (1420 when it can't be used); the first
// sync brings it to the paths to the peers.
func (n *Node) startMTU(advertise netip.Addr) int {
	mtu, err := n.deps.AutoMTU(advertise)
	if err != nil {
		mtu = 1500 - config.WireGuardOverhead
		n.log.Warn("mtu auto: cannot use the underlay MTU at start; using 1420 until the first path check", "err", err)
	}
	n.mtu = autoMTU{on: true, advertise: advertise, current: mtu}
	return mtu
}

// tuneMTU brings the interface MTU to the paths of v's configured peers
// (see the rules above). Called by sync before the WireGuard reconcile.
func (n *Node) tuneMTU(v view) {
	if !n.mtu.on {
		return
	}
	var t mtuTuner = n.mesh
	now := n.deps.Now()
	var peers []mtuPath
	for _, p := range v.peers {
		if p.configured && p.endpoint.IsValid() {
			peers = append(peers, mtuPath{name: p.rec.Name, key: p.name, addr: p.endpoint.Addr().Unmap()})
		}
	}
	addrs := make([]netip.Addr, 0, len(peers))
	for _, p := range peers {
		addrs = append(addrs, p.addr)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if slices.Equal(addrs, n.mtu.endpoints) && now.Sub(n.mtu.checked) < mtuRecheck {
		return
	}
	n.mtu.endpoints, n.mtu.checked = addrs, now

	paths := n.lookupPaths(t, append([]mtuPath{{addr: n.mtu.advertise}}, peers...))
	target, limit, ok := mtuTarget(paths)
	if !ok {
		return
	}
	if target == mesh.MinMTU && limit.mtu-mesh.Overhead < mesh.MinMTU {
		if limit != n.mtu.warned {
			n.mtu.warned = limit
			n.log.Warn("mtu auto: underlay path too small for WireGuard; keeping 1280, larger packets on it are fragmented or dropped",
				mtuPathAttrs(limit, "path_mtu", limit.mtu)...)
		}
	} else {
		n.mtu.warned = mtuPath{}
	}
	next := n.mtu.next(target, now)
	if next == 0 {
		return
	}
	old := n.mtu.current
	if err := t.SetMTU(next); err != nil {
		n.log.Error("mtu auto: cannot set the interface MTU; will retry", "mtu", next, "err", err)
		return
	}
	n.mtu.current = next
	if next < old {
		n.log.Info("mtu auto: interface MTU lowered", mtuPathAttrs(limit, "old", old, "mtu", next, "path_mtu", limit.mtu)...)
	} else {
		n.log.Info("mtu auto: interface MTU raised", mtuPathAttrs(limit, "old", old, "mtu", next, "path_mtu", limit.mtu)...)
	}
}

// lookupPaths fills in the underlay MTU of each path (one lookup per
// address); paths whose lookup fails are left out.
func (n *Node) lookupPaths(t mtuTuner, paths []mtuPath) []mtuPath {
	seen := map[netip.Addr]int{}
	out := paths[:0]
	for _, p := range paths {
		mtu, done := seen[p.addr]
		if !done {
			var err error
			if mtu, err = t.PathMTU(p.addr); err != nil {
				n.log.Debug("mtu auto: no path MTU", mtuPathAttrs(p, "err", err)...)
				mtu = 0
			}
			seen[p.addr] = mtu
		}
		if mtu > 0 {
			p.mtu = mtu
			out = append(out, p)
		}
	}
	return out
}

// mtuTarget is the interface MTU the paths call for: the lowest path MTU
// minus the overhead, not below 1280, and the path that sets it (the first
// of the lowest). ok is false without paths.
func mtuTarget(paths []mtuPath) (target int, limit mtuPath, ok bool) {
	for _, p := range paths {
		if !ok || p.mtu < limit.mtu {
			limit, ok = p, true
		}
	}
	if !ok {
		return 0, mtuPath{}, false
	}
	return max(limit.mtu-mesh.Overhead, mesh.MinMTU), limit, true
}

// next returns the MTU to set now for target (0: leave it): lower at once,
// raise once the target has stayed above current for mtuRaiseHold.
func (a *autoMTU) next(target int, now time.Time) int {
	switch {
	case target <= a.current:
		a.higherSince = time.Time{}
		if target == a.current {
			return 0
		}
		return target
	case a.higherSince.IsZero():
		a.higherSince = now
		return 0
	case now.Sub(a.higherSince) >= mtuRaiseHold:
		a.higherSince = time.Time{}
		return target
	}
	return 0
}

// mtuPathAttrs are log attributes naming the path p, then extra.
func mtuPathAttrs(p mtuPath, extra ...any) []any {
	if p.key == "" {
		return append([]any{"limited_by", "advertise link", "address", p.addr}, extra...)
	}
	return append([]any{"limited_by", "peer", "peer", p.name, "public_key", p.key, "endpoint", p.addr}, extra...)
}
