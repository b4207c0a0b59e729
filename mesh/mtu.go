package mesh

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Overhead is what WireGuard adds to every packet on the underlay in the
// worst case (IPv6 outer header 40 + UDP 8 + WireGuard 32).
const Overhead = 80

// MinMTU is the smallest interface MTU segmesh uses: the overlay carries
// IPv6, which needs 1280.
const MinMTU = 1280

// AutoMTU returns the underlay MTU at addr (see PathMTU; for an address of
// this host, the MTU of the link holding it) minus 80 bytes of WireGuard
// overhead; an error if it can't tell or if the result is below 1280 (the
// overlay carries IPv6).
func AutoMTU(addr netip.Addr) (int, error) {
	return autoMTU(&netlink.Handle{}, addr)
}

func autoMTU(h netOps, addr netip.Addr) (int, error) {
	raw, err := underlayMTU(h, addr)
	if err != nil {
		return 0, fmt.Errorf("auto MTU: %w", err)
	}
	mtu := raw - Overhead
	if mtu < MinMTU {
		return 0, fmt.Errorf("auto MTU for %s: the underlay MTU is %d, leaving %d for the overlay (< %d)",
			addr, raw, mtu, MinMTU)
	}
	return mtu, nil
}

// PathMTU returns the underlay MTU towards dst as this host's routing table
// sees it, without subtracting the WireGuard overhead: the lowest of the
// route's MTU (an `mtu` set on the route, or a path MTU the kernel learned
// and cached for dst) and its output link's MTU. For an address of this
// host it is the MTU of the link holding it. On a Mesh made by Attach it
// returns ErrNoLink.
func (m *Mesh) PathMTU(dst netip.Addr) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	if m.nl == nil {
		return 0, ErrNoLink
	}
	return underlayMTU(m.nl, dst)
}

// SetMTU changes the interface MTU (1280..65535). wireguard-go takes the new
// value from the link event the kernel sends (its TUN listens for
// RTM_NEWLINK); the kernel module reads the link MTU itself. On a Mesh made
// by Attach it returns ErrNoLink.
func (m *Mesh) SetMTU(mtu int) error {
	if mtu < MinMTU || mtu > 65535 {
		return fmt.Errorf("set MTU: %d out of range %d..65535", mtu, MinMTU)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.nl == nil {
		return ErrNoLink
	}
	if err := m.nl.LinkSetMTU(m.link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, m.name, err)
	}
	return nil
}

// underlayMTU is the MTU towards addr: for an address of this host the MTU
// of the link holding it, else the lowest over the routes to it of the
// route MTU (when set) and the output link's MTU.
func underlayMTU(h netOps, addr netip.Addr) (int, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return 0, fmt.Errorf("underlay MTU: invalid address")
	}
	routes, rerr := h.RouteGet(addr.AsSlice())
	local := rerr != nil // no route: maybe an address of a link that is down
	for _, r := range routes {
		local = local || r.Type == unix.RTN_LOCAL
	}
	if local {
		idx, err := holdingLink(h, addr)
		switch {
		case err != nil:
			return 0, fmt.Errorf("underlay MTU for %s: %w", addr, err)
		case idx > 0:
			return linkMTU(h, idx, addr)
		case rerr != nil:
			return 0, fmt.Errorf("underlay MTU for %s: no link holds it and no route: %w", addr, rerr)
		}
	}
	best := 0
	for _, r := range routes {
		if r.LinkIndex <= 0 || r.Type == unix.RTN_LOCAL {
			continue
		}
		mtu, err := linkMTU(h, r.LinkIndex, addr)
		if err != nil {
			return 0, err
		}
		if r.MTU > 0 && r.MTU < mtu {
			mtu = r.MTU
		}
		if best == 0 || mtu < best {
			best = mtu
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("underlay MTU for %s: the route to it has no output link", addr)
	}
	return best, nil
}

func linkMTU(h netOps, idx int, addr netip.Addr) (int, error) {
	l, err := h.LinkByIndex(idx)
	if err != nil {
		return 0, fmt.Errorf("underlay MTU for %s: link %d: %w", addr, idx, err)
	}
	return l.Attrs().MTU, nil
}

// holdingLink is the index of the link that holds addr, 0 if none does.
func holdingLink(h netOps, addr netip.Addr) (int, error) {
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, family) })
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == addr.WithZone("") && a.LinkIndex > 0 {
			return a.LinkIndex, nil
		}
	}
	return 0, nil
}
