package mesh

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Overhead is what WireGuard adds to every packet on the underlay in the
// worst case (IPv6 outer header 40 + UDP 8 + WireGuard 32).
const Overhead = 80

// AutoMTU returns the MTU of the underlay link that holds addr (or, if none
// holds it, the link of the route to it) minus 80 bytes of WireGuard
// overhead; an error if it can't tell or if the result is below 1280 (the
// overlay carries IPv6).
func AutoMTU(addr netip.Addr) (int, error) {
	return autoMTU(&netlink.Handle{}, addr)
}

func autoMTU(h netOps, addr netip.Addr) (int, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return 0, fmt.Errorf("auto MTU: invalid address")
	}
	idx, err := linkIndexFor(h, addr)
	if err != nil {
		return 0, fmt.Errorf("auto MTU for %s: %w", addr, err)
	}
	l, err := h.LinkByIndex(idx)
	if err != nil {
		return 0, fmt.Errorf("auto MTU for %s: link %d: %w", addr, idx, err)
	}
	mtu := l.Attrs().MTU - Overhead
	if mtu < 1280 {
		return 0, fmt.Errorf("auto MTU for %s: link %s has MTU %d, leaving %d for the overlay (< 1280)",
			addr, l.Attrs().Name, l.Attrs().MTU, mtu)
	}
	return mtu, nil
}

// linkIndexFor finds the link holding addr, else the output link of the
// route to it.
func linkIndexFor(h netOps, addr netip.Addr) (int, error) {
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
	routes, err := h.RouteGet(addr.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("no link holds it and no route: %w", err)
	}
	for _, r := range routes {
		if r.LinkIndex > 0 {
			return r.LinkIndex, nil
		}
	}
	return 0, fmt.Errorf("no link holds it and the route to it has no output link")
}
