package mesh

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// removeStaleLink deletes an interface called name if one exists (left by a
// crashed run).
func removeStaleLink(h netOps, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		if isLinkNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil && !isLinkNotFound(err) {
		return fmt.Errorf("delete stale interface %s: %w", name, err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// disableIPv6Autoconf turns off IPv6 address autoconfiguration on link
// through netlink (IFLA_INET6_ADDR_GEN_MODE = none): the kernel generates no
// link-local address, and nothing is written under /proc/sys, so the daemon
// runs with a read-only /proc/sys (the unit's ProtectKernelTunables=yes).
// It must run while the link is still down.
//
// accept_ra is deliberately left alone (it has no netlink setter): a router
// advertisement must come from a link-local source address, and the only
// packets that reach the mesh interface are the ones WireGuard decrypted
// from a peer whose allowed IPs (its overlay /32 and /128) contain their
// source; no peer is ever given a link-local address, so no router
// advertisement can arrive on the interface.
func disableIPv6Autoconf(h netOps, link netlink.Link) error {
	if err := h.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("set addr_gen_mode none on %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// overlayAddr is the netlink form of an overlay address with its mesh
// prefix length (so the kernel's prefix route covers the whole mesh).
// IPv6 skips duplicate address detection: the address is derived from the
// key and usable at once.
func overlayAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// ensureRoute adds a route for the masked prefix of p via link unless one
// already exists (normally the kernel made it from the address).
func ensureRoute(h netOps, link netlink.Link, p netip.Prefix) error {
	dst := ipNet(p.Masked())
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	})
	if err != nil {
		return fmt.Errorf("list routes for %s: %w", dst, err)
	}
	if len(routes) > 0 {
		return nil
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}
	if p.Addr().Is4() {
		r.Src = p.Addr().AsSlice()
	}
	if err := h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add route %s dev %s: %w", dst, link.Attrs().Name, err)
	}
	return nil
}

// retryDump retries a netlink dump that was interrupted by a concurrent
// change (netlink.ErrDumpInterrupted).
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for i := 0; i < 5; i++ {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		time.Sleep(time.Duration(i+1) * 10 * time.Millisecond)
	}
	return v, err
}

func isAddrNotFound(err error) bool { return errors.Is(err, unix.EADDRNOTAVAIL) }
